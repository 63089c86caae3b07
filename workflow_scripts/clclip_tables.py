"""Entry point: CL-CLIP Tables III-VIII (with the compute the jobs recorded; the mean over seeds, with
their interval when there are several) and Fig. 4 from the runs' rows."""
from pathlib import Path

import pandas as pd

from ticlip_core import rows as row_schema
from ticlip_core.clclip.tables import CAPTIONS, plot_sessions, read_compute, read_rows, study_tables, write_table
from ticlip_core.reporting.uncertainty import by_seed, mean_over_seeds, mean_rows
from ticlip_core.workflow_io import logged

with logged(snakemake.log[0]):
    runs, ablations = by_seed(snakemake.input.runs), by_seed(snakemake.input.ablations)
    computes, ablation_computes = by_seed(snakemake.input.compute), by_seed(snakemake.input.ablation_compute)
    per_seed, everything, method_rows = [], [], []
    for seed in runs:
        rows = read_rows(runs[seed])
        abl = {Path(p).stem: read_rows([p]) for p in ablations.get(seed, [])}
        abl_compute = read_compute(ablation_computes[seed]) if seed in ablation_computes else read_compute([])
        per_seed.append(study_tables(rows, abl, read_compute(computes[seed]), abl_compute, snakemake.params.settings))
        everything.append(pd.concat([rows, *abl.values()]))
        method_rows.append(rows)
    out = Path(snakemake.output.rows).parent
    row_schema.write_rows(mean_rows(everything), snakemake.output.rows)
    for name in per_seed[0]:
        table, spread = mean_over_seeds([t[name] for t in per_seed], ["Method"])
        write_table(table, out / name, name, spread, seeds=len(per_seed))
        print(CAPTIONS[name], table.to_string(), sep="\n")
    plot_sessions(mean_rows(method_rows), Path(snakemake.output.figure))
