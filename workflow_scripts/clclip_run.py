"""Entry point: one CL-CLIP method in every configured setting (every variant, hyperparameter
chosen on validation), or the original model; long-format rows, their per-sample entries, the
chosen values and the compute records. Finished sessions are kept in a work folder beside the outputs
(``<method>.work``), so a killed job resumes; it is removed once the outputs are written."""
import json
from pathlib import Path

import pandas as pd

from ticlip_core.engine.chain_store import ChainStore, job_fingerprint
from ticlip_core import samples as sample_entries
from ticlip_core.clclip.compute import original_record
from ticlip_core.clclip.study import evaluate_original, run_method
from ticlip_core.workflow_io import logged

with logged(snakemake.log[0]):
    method, rows, chosen, compute, entries = snakemake.wildcards.method, [], {}, [], []
    cfg, task, base = snakemake.params.cfg, snakemake.input.task, snakemake.input.get("base")
    store = None
    if method != "original":
        store = ChainStore(Path(snakemake.output.rows).with_suffix(".work"),
                           job_fingerprint(cfg, job=f"clclip_run {method}", task_dir=task, base_checkpoint=base))
    for setting in snakemake.params.settings:
        common = dict(setting=setting, task_dir=task, base_checkpoint=base)
        if method == "original":
            rows += evaluate_original(cfg, samples=entries, **common)
            compute.append(original_record(setting))
        else:
            r, chosen[setting], c = run_method(cfg, method_name=method, store=store, samples=entries,
                                                **common)
            rows += r
            compute += c
    # entries that disagree with their row fail the job, naming the row (ticlip_core/samples.py)
    sample_entries.check_matches(pd.DataFrame(rows), sample_entries.frame(entries))
    sample_entries.write_samples(entries, snakemake.output.samples)
    pd.DataFrame(rows).to_csv(snakemake.output.rows, index=False)
    with open(snakemake.output.chosen, "w") as f:
        json.dump(chosen, f, indent=2, default=str)
    Path(snakemake.output.compute).write_text(json.dumps(compute, indent=2))
    if store is not None:
        store.remove()
    print(json.dumps(chosen, indent=2, default=str))
