"""Entry point: all evaluation rows and compute records -> TiC-CLIP Table 2 and per-step table."""
import json
from pathlib import Path

import pandas as pd

from ticlip_core.tables import per_step_table, tic_table, write_table
from ticlip_core.workflow_io import logged

with logged(snakemake.log[0]):
    steps, methods = snakemake.params.steps, snakemake.params.methods
    rows = pd.concat([pd.read_csv(p, dtype={"train_step": str, "eval_step": str}) for p in snakemake.input.evals],
                     ignore_index=True)
    compute = pd.DataFrame([json.loads(Path(p).read_text()) for p in snakemake.input.compute])
    compute = compute.rename(columns={"step": "train_step"})
    table = tic_table(rows, compute, steps, methods, study="tic")
    write_table(table, Path(snakemake.output.csv).with_suffix(""))
    per_step_table(rows, steps, methods, study="tic").to_csv(snakemake.output.per_step, index=False)
    rows.to_csv(snakemake.output.rows, index=False)
    print(table.to_string())
