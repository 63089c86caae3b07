"""Entry point: evaluation rows and compute records of every seed -> TiC-CLIP Table 2 (mean over seeds,
with their interval when there are several) and the per-step table."""
from pathlib import Path

from ticlip_core.reporting.uncertainty import by_seed, mean_over_seeds, mean_rows
from ticlip_core.rows import read_rows, write_rows
from ticlip_core.tic.tables import per_step_table, read_compute_records, tic_table, write_table
from ticlip_core.workflow_io import logged

with logged(snakemake.log[0]):
    steps, runs = snakemake.params.steps, snakemake.params.runs
    evals, computes = by_seed(snakemake.input.evals), by_seed(snakemake.input.compute)
    rows = {s: read_rows(paths) for s, paths in evals.items()}
    compute = {s: read_compute_records(paths) for s, paths in computes.items()}
    tables = [tic_table(rows[s], compute[s], steps, runs, study="tic", **snakemake.params.chance) for s in rows]
    table, spread = mean_over_seeds(tables, ["Method"])
    write_table(table, Path(snakemake.output.csv).with_suffix(""), spread, seeds=len(tables))
    per_step, _ = mean_over_seeds([per_step_table(rows[s], steps, runs, study="tic", compute=compute[s]) for s in rows],
                                  ["method", "step_index", "train_step"])
    per_step.to_csv(snakemake.output.per_step, index=False)
    write_rows(mean_rows(list(rows.values())), snakemake.output.rows)  # the figures' rows: mean over seeds
    print(f"seeds: {list(rows)}")
    print(table.to_string())
