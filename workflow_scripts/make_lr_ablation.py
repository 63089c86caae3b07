"""Entry point: the LR ablation's evaluation rows and compute records of every seed -> its table."""
from pathlib import Path

from ticlip_core.reporting.uncertainty import by_seed, mean_over_seeds
from ticlip_core.rows import read_rows
from ticlip_core.tic.tables import lr_ablation_table, read_compute_records, write_table
from ticlip_core.workflow_io import logged

with logged(snakemake.log[0]):
    evals, computes = by_seed(snakemake.input.evals), by_seed(snakemake.input.compute)
    tables = [lr_ablation_table(read_rows(evals[s]), read_compute_records(computes[s]), snakemake.params.steps,
                                snakemake.params.runs, snakemake.params.settings, study="tic",
                                **snakemake.params.chance) for s in evals]
    table, spread = mean_over_seeds(tables, ["Method"])
    write_table(table, Path(snakemake.output.csv).with_suffix(""), spread, seeds=len(tables))
    print(table.to_string())
