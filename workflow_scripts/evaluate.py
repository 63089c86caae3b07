"""Entry point: evaluate every checkpoint of one run on every step's test split and the static tasks."""
from pathlib import Path

import torch

from ticlip_core.data.bucketing import step_shards
from ticlip_core.evaluate import evaluate_checkpoint
from ticlip_core.models import create_model, load_checkpoint
from ticlip_core.workflow_io import logged

with logged(snakemake.log[0]):
    config, steps = snakemake.config, list(snakemake.params.steps)
    torch.set_num_threads(snakemake.threads)
    model, _, _, tokenizer = create_model(config["model"]["name"], None)
    test_shards = {s: step_shards(snakemake.input.steps_dir, s, "test") for s in steps}
    static_shards = sorted(str(p) for p in Path(snakemake.input.static_dir).glob("*.tar"))
    for train_step, checkpoint, out in zip(steps, snakemake.input.models, snakemake.output):
        load_checkpoint(model, checkpoint)
        rows = evaluate_checkpoint(model, tokenizer, config=config, study="tic", method=snakemake.wildcards.run,
                                   train_step=train_step, test_shards=test_shards, static_shards=static_shards)
        rows.to_csv(out, index=False)
        print(rows.to_string())
