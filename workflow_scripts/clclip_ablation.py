"""Entry point: a VR-LwF-WM ablation (Tables V-VIII): the sampling length M (plus caption
replay) or the number Ks of pseudo-sentences, one chain per value, in every setting; rows, their
per-sample entries, the chosen values and the compute records. Finished sessions are kept in a work folder beside the
outputs (``<ablation>.work``), so a killed job resumes; it is removed once the outputs are written."""
import json
from pathlib import Path

import pandas as pd

from ticlip_core import samples as sample_entries
from ticlip_core.clclip.ablations import ablation_runs
from ticlip_core.engine.chain_store import ChainStore, job_fingerprint
from ticlip_core.clclip.study import run_method
from ticlip_core.data.layout import step_shards
from ticlip_core.workflow_io import logged

with logged(snakemake.log[0]):
    ablation = snakemake.wildcards.ablation
    steps_dir = Path(snakemake.input.steps_dir)  # every step's train split, checked against its index
    base_shards = [s for d in sorted(steps_dir.iterdir()) if d.is_dir() for s in step_shards(steps_dir, d.name, "train")]
    config = snakemake.params.cfg
    beta = config["clclip"]["ablations"]["beta"]
    store = ChainStore(Path(snakemake.output.rows).with_suffix(".work"),
                       job_fingerprint(config, job=f"clclip_ablation {ablation}", task_dir=snakemake.input.task,
                                       base_checkpoint=snakemake.input.get("base")))
    rows, chosen, compute, entries = [], {}, [], []
    for setting in snakemake.params.settings:
        for label, options in ablation_runs(config, ablation, base_shards):
            r, chosen[f"{setting} {label}"], c = run_method(
                config, setting=setting, method_name="vr_lwf", task_dir=snakemake.input.task,
                base_checkpoint=snakemake.input.get("base"), variants=["wm"], options=options, label=label,
                grid=None if beta is None else [beta], store=store, samples=entries)
            rows += r
            compute += c
    # entries that disagree with their row fail the job, naming the row (ticlip_core/samples.py)
    sample_entries.check_matches(pd.DataFrame(rows), sample_entries.frame(entries))
    sample_entries.write_samples(entries, snakemake.output.samples)
    pd.DataFrame(rows).to_csv(snakemake.output.rows, index=False)
    with open(snakemake.output.chosen, "w") as f:
        json.dump(chosen, f, indent=2, default=str)
    Path(snakemake.output.compute).write_text(json.dumps(compute, indent=2))
    store.remove()
