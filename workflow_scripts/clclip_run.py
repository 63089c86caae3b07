"""Entry point: one CL-CLIP method in every configured setting (every variant, hyperparameter
chosen on validation), or the original model; long-format rows and the chosen values."""
import json

import pandas as pd

from ticlip_core.clclip.study import evaluate_original, run_method
from ticlip_core.workflow_io import logged

with logged(snakemake.log[0]):
    method, rows, chosen = snakemake.wildcards.method, [], {}
    for setting in snakemake.params.settings:
        common = dict(setting=setting, task_dir=snakemake.input.task, base_checkpoint=snakemake.input.get("base"))
        if method == "original":
            rows += evaluate_original(snakemake.params.cfg, **common)
        else:
            r, chosen[setting] = run_method(snakemake.params.cfg, method_name=method, **common)
            rows += r
    pd.DataFrame(rows).to_csv(snakemake.output.rows, index=False)
    with open(snakemake.output.chosen, "w") as f:
        json.dump(chosen, f, indent=2, default=str)
    print(json.dumps(chosen, indent=2, default=str))
