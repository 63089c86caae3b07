"""Entry point: evaluation rows and compute records -> TiC-CLIP Table 2 and the per-step table."""
from pathlib import Path

from ticlip_core.rows import read_rows, write_rows
from ticlip_core.tic.tables import per_step_table, read_compute_records, tic_table, write_table
from ticlip_core.workflow_io import logged

with logged(snakemake.log[0]):
    steps, runs = snakemake.params.steps, snakemake.params.runs
    rows, compute = read_rows(snakemake.input.evals), read_compute_records(snakemake.input.compute)
    table = tic_table(rows, compute, steps, runs, study="tic", **snakemake.params.chance)
    write_table(table, Path(snakemake.output.csv).with_suffix(""))
    per_step_table(rows, steps, runs, study="tic", compute=compute).to_csv(snakemake.output.per_step, index=False)
    write_rows(rows, snakemake.output.rows)
    print(table.to_string())
