"""Entry point: CL-CLIP Tables III-VIII (with the compute the jobs recorded) and Fig. 4 from the
runs' rows."""
from pathlib import Path

import pandas as pd

from ticlip_core import rows as row_schema
from ticlip_core.clclip.tables import CAPTIONS, method_table, plot_sessions, read_compute, read_rows, write_table
from ticlip_core.workflow_io import logged

TABLE_NUMBER = {("ost", "length"): 5, ("ost", "num_pseudo"): 6, ("mst", "length"): 7, ("mst", "num_pseudo"): 8}

with logged(snakemake.log[0]):
    runs = read_rows(snakemake.input.runs)
    compute = read_compute(snakemake.input.compute)
    ablation_compute = pd.concat([compute, read_compute(snakemake.input.ablation_compute)], ignore_index=True)
    out = Path(snakemake.output.rows).parent
    tables = {("table3_ost" if s == "ost" else "table4_mst"): (s, runs[runs["scenario"] == s], compute)
              for s in snakemake.params.settings}
    everything = [runs]
    for path in snakemake.input.ablations:
        ablation, rows = Path(path).stem, read_rows([path])
        everything.append(rows)
        for setting in snakemake.params.settings:
            original = runs[(runs["scenario"] == setting) & (runs["method"] == "original")]
            tables[f"table{TABLE_NUMBER[setting, ablation]}_{setting}_{ablation}"] = (
                setting, pd.concat([original, rows[rows["scenario"] == setting]]), ablation_compute)
    row_schema.write_rows(pd.concat(everything), snakemake.output.rows)
    for name, (setting, rows, records) in tables.items():
        table = method_table(rows, setting, records)
        write_table(table, out / name, name)
        print(CAPTIONS[name], table.to_string(), sep="\n")
    plot_sessions(runs, Path(snakemake.output.figure))
