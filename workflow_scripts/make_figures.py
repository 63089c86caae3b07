"""Entry point: evaluation rows and Table 2 -> heatmaps, per-step curves, compute vs performance."""
import pandas as pd

from ticlip_core.tic.figures import plot_compute_vs_performance, plot_eval_matrix, plot_step_curves
from ticlip_core.metrics import evaluation_matrix, task_primary_metric
from ticlip_core.rows import read_rows
from ticlip_core.workflow_io import logged

with logged(snakemake.log[0]):
    steps, methods, tasks = snakemake.params.steps, snakemake.params.methods, snakemake.params.tasks
    rows = read_rows([snakemake.input.rows])
    matrices = iter(snakemake.output.matrices)
    for method in methods:
        for task in tasks:
            metric = task_primary_metric(rows, task)
            E = evaluation_matrix(rows, method, task, metric, steps)
            plot_eval_matrix(E, f"{method}: {task} ({metric})", next(matrices))
    for task, path in zip(tasks, snakemake.output.curves):
        plot_step_curves(rows, steps, methods, task, task_primary_metric(rows, task), path)
    plot_compute_vs_performance(pd.read_csv(snakemake.input.table), snakemake.output.compute)
