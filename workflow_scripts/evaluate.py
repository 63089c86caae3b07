"""Entry point: evaluate one checkpoint on every step's test split and the static tasks."""
from pathlib import Path

import torch

from ticlip_core.data.bucketing import step_shards
from ticlip_core.evaluate import evaluate_checkpoint
from ticlip_core.models import create_model, load_checkpoint
from ticlip_core.workflow_io import logged

with logged(snakemake.log[0]):
    config = snakemake.config
    torch.set_num_threads(snakemake.threads)
    model, _, _, tokenizer = create_model(config["model"]["name"], None)
    load_checkpoint(model, snakemake.input.model)
    steps = list(config["tic"]["steps"])
    rows = evaluate_checkpoint(
        model, tokenizer, config=config, study="tic", method=snakemake.wildcards.method,
        train_step=snakemake.wildcards.step,
        test_shards={s: step_shards(snakemake.input.steps_dir, s, "test") for s in steps},
        static_shards=sorted(str(p) for p in Path(snakemake.input.static_dir).glob("*.tar")))
    rows.to_csv(snakemake.output[0], index=False)
    print(rows.to_string())
