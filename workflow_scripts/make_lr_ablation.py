"""Entry point: the LR ablation's evaluation rows and compute records -> its table."""
from pathlib import Path

from ticlip_core.rows import read_rows
from ticlip_core.tic.tables import lr_ablation_table, read_compute_records, write_table
from ticlip_core.workflow_io import logged

with logged(snakemake.log[0]):
    rows, compute = read_rows(snakemake.input.evals), read_compute_records(snakemake.input.compute)
    table = lr_ablation_table(rows, compute, snakemake.params.steps, snakemake.params.runs,
                              snakemake.params.settings, study="tic", **snakemake.params.chance)
    write_table(table, Path(snakemake.output.csv).with_suffix(""))
    print(table.to_string())
