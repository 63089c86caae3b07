"""Entry point: every study's claims checked against its table cells and their intervals ->
results/findings.{csv,md,html} (docs/metrics.md, "Findings")."""
from importlib import import_module
from pathlib import Path

import pandas as pd

from ticlip_core.reporting.findings import evaluate_claims, method_note, not_evaluated, write_findings
from ticlip_core.workflow_io import logged

with logged(snakemake.log[0]):
    p = snakemake.params
    cfg = p.cfg
    built = {"tic": lambda: import_module("ticlip_core.tic.claims").claims(cfg),
             "clclip": lambda: import_module("ticlip_core.clclip.claims").claims(cfg),
             "memclip": lambda: import_module("ticlip_core.memclip.claims").claims(cfg, p.memclip_methods,
                                                                                    p.memoryless)}
    results = []
    for study in ("tic", "clclip", "memclip"):
        claims = built[study]()
        if study not in p.studies:
            results.append(not_evaluated(claims, f"the {study} study is turned off ({study}.enabled: false)"))
            continue
        i = p.studies.index(study)
        cells = pd.read_csv(snakemake.input.cells[i], keep_default_na=False, na_values=[""])
        draws = pd.read_parquet(snakemake.input.draws[i])
        results.append(evaluate_claims(claims, cells, draws, p.level))
    results = pd.concat(results, ignore_index=True)
    for path in write_findings(results, Path(snakemake.output.md).with_suffix(""),
                               method_note(p.draws, p.seed, p.level, p.replicates)):
        print(f"wrote {path}")
    print(Path(snakemake.output.md).read_text())
