"""Entry point: per-step data counts (table) and samples per year (figure)."""
import json

import pandas as pd

from ticlip_core.data.report import data_report_table, samples_per_year_figure
from ticlip_core.workflow_io import logged

with logged(snakemake.log[0]):
    steps = list(snakemake.params.steps)
    manifest = pd.read_parquet(snakemake.input.manifest, columns=["caption", "timestamp", "step", "excluded"])
    with open(snakemake.input.bucket_summary) as f:
        bucket_summary = json.load(f)
    prepare_summary = None
    if "prepare_summary" in snakemake.input.keys():
        with open(snakemake.input.prepare_summary) as f:
            prepare_summary = json.load(f)
    table = data_report_table(manifest, bucket_summary, steps, prepare_summary)
    table.to_csv(snakemake.output.csv, index=False)
    with open(snakemake.output.md, "w") as f:
        # no captions in a row (the "no step" row): "-" rather than "nan"
        shown = table.astype(object).where(table.notna(), None)
        f.write(shown.to_markdown(index=False, floatfmt=".1f", missingval="-") + "\n")
    samples_per_year_figure(manifest, steps, snakemake.output.figure)
    print(table.to_string())
