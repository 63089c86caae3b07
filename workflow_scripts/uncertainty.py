"""Entry point: one study's table cells per seed, their paired bootstrap over test samples, and each
cell's intervals (docs/metrics.md, "Uncertainty")."""
from importlib import import_module
from pathlib import Path

import pandas as pd

from ticlip_core.reporting.uncertainty import CELL, bootstrap_cells, by_seed, summarize, table_cells
from ticlip_core.rows import read_rows
from ticlip_core.samples import check_matches, read_samples
from ticlip_core.workflow_io import logged

with logged(snakemake.log[0]):
    p, study = snakemake.params, snakemake.params.study
    claims = import_module(f"ticlip_core.{study}.claims")
    rows, samples = by_seed(snakemake.input.rows), by_seed(snakemake.input.samples)
    if study == "tic":
        from ticlip_core.tic.tables import read_compute_records as read_compute
    elif study == "clclip":
        from ticlip_core.clclip.tables import read_compute
    computes = by_seed(snakemake.input.get("compute", []))
    ablation_computes = by_seed(snakemake.input.get("ablation_compute", []))
    cells, draws = [], []
    for seed, paths in rows.items():
        parts = {}
        for path in paths:  # the rows a study keeps apart: TiC's evaluations, CL-CLIP's runs and each ablation
            part = Path(path).stem if "/ablations/" in path else p.part
            parts[part] = pd.concat([parts[part], read_rows([path])]) if part in parts else read_rows([path])
        entries = read_samples(samples[seed])
        check_matches(pd.concat(parts.values(), ignore_index=True), entries, atol=1e-6)  # float32 accuracy sums
        if study == "tic":
            compute = read_compute(computes[seed])
        elif study == "clclip":
            compute = (read_compute(computes[seed]), read_compute(ablation_computes.get(seed, [])))
        else:
            compute = None
        make = lambda parts: claims.paper_tables(parts, compute, p.tables)  # noqa: E731
        tables = make(parts)
        labels = claims.labels(tables)
        cells.append(table_cells(tables, labels).assign(seed=seed))
        draws.append(bootstrap_cells(make, parts, entries, p.draws, p.seed, labels,
                                     processes=snakemake.threads).assign(seed=seed))
        print(f"seed {seed}: {len(cells[-1])} cells, {p.draws} draws over {entries['sample_set'].nunique()} test sets")
    cells, draws = pd.concat(cells, ignore_index=True), pd.concat(draws, ignore_index=True)
    cells.loc[:, [*CELL, "seed", "value"]].to_csv(snakemake.output.cells, index=False)
    draws.loc[:, [*CELL, "seed", "draw", "value"]].to_parquet(snakemake.output.draws, index=False)
    summary = summarize(cells, draws, p.level)
    summary.to_csv(snakemake.output.intervals, index=False)
    print(summary.to_string(max_rows=60))
