"""Entry point: CL-CLIP Tables III-VIII and Fig. 4 from the runs' rows."""
from pathlib import Path

import pandas as pd

from ticlip_core.clclip.tables import CAPTIONS, method_table, plot_sessions, read_rows, write_table
from ticlip_core.workflow_io import logged

TABLE_NUMBER = {("ost", "length"): 5, ("ost", "num_pseudo"): 6, ("mst", "length"): 7, ("mst", "num_pseudo"): 8}

with logged(snakemake.log[0]):
    runs = read_rows(snakemake.input.runs)
    out = Path(snakemake.output.rows).parent
    tables = {("table3_ost" if s == "ost" else "table4_mst"): (s, runs[runs["setting"] == s])
              for s in snakemake.params.settings}
    everything = [runs]
    for path in snakemake.input.ablations:
        ablation, rows = Path(path).stem, read_rows([path])
        everything.append(rows)
        for setting in snakemake.params.settings:
            original = runs[(runs["setting"] == setting) & (runs["method"] == "original")]
            tables[f"table{TABLE_NUMBER[setting, ablation]}_{setting}_{ablation}"] = (
                setting, pd.concat([original, rows[rows["setting"] == setting]]))
    pd.concat(everything).to_csv(snakemake.output.rows, index=False)
    for name, (setting, rows) in tables.items():
        table = method_table(rows, setting)
        write_table(table, out / name, CAPTIONS[name])
        print(CAPTIONS[name], table.to_string(), sep="\n")
    plot_sessions(runs, Path(snakemake.output.figure))
