"""Entry point: evaluate every checkpoint of one run on every step's test split and the static tasks,
writing each checkpoint's rows (CSV) and their per-sample entries (parquet, ``ticlip_core.samples``)."""
from pathlib import Path

import torch

from ticlip_core.class_labels import key_table_labels, shard_dir_labels, synthetic_labels
from ticlip_core.data import world
from ticlip_core.data.layout import step_shards
from ticlip_core.evaluation import DecodedSets
from ticlip_core.samples import check_matches, write_samples
from ticlip_core.tic.evaluate import SAMPLES_ATOL, SYNTHETIC_STATIC, evaluate_checkpoint_samples
from ticlip_core.models import create_model, load_checkpoint
from ticlip_core.rows import write_rows
from ticlip_core.workflow_io import logged

with logged(snakemake.log[0]):
    config, steps = snakemake.params.cfg, list(snakemake.params.steps)
    templates = config["eval"]["templates"]
    torch.set_num_threads(snakemake.threads)
    # the weights come from the checkpoints; a pretrained tag only sets the preprocessing
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, _, _, tokenizer = create_model(config["model"]["name"], config["model"]["pretrained"], device=device,
                                          load_weights=False)
    test_shards = {s: step_shards(snakemake.input.steps_dir, s, "test") for s in steps}
    if config["data"]["source"] == "synthetic":
        dynamic_labels = synthetic_labels(world.class_names(), templates)
    elif "classification" in snakemake.params.dynamic_tasks:
        dynamic_labels = key_table_labels(config["data"]["classification"], templates)
    else:
        dynamic_labels = None
    static_sets = {}
    for (name, spec), folder in zip(snakemake.params.static_sets.items(), snakemake.input.static):
        shards = sorted(str(p) for p in Path(folder).glob("*.tar"))
        labels = None if name == SYNTHETIC_STATIC else shard_dir_labels(folder, spec.get("templates") or templates)
        static_sets[name] = (shards, labels)
    decoded = DecodedSets(config["eval"]["cache_mb"])  # every checkpoint reads the same test sets
    for train_step, checkpoint, out, out_samples in zip(steps, snakemake.input.models, snakemake.output.rows,
                                                         snakemake.output.samples, strict=True):
        load_checkpoint(model, checkpoint)  # loads on the CPU, copies into the model's device
        rows, entries = evaluate_checkpoint_samples(
            model, tokenizer, config=config, study="tic", method=snakemake.wildcards.run, train_step=train_step,
            test_shards=test_shards, dynamic_labels=dynamic_labels, static_sets=static_sets, checkpoint=checkpoint,
            scenario=snakemake.params.scenario, decoded=decoded)
        check_matches(rows, entries, atol=SAMPLES_ATOL)  # a row its entries do not give fails the job, named
        write_rows(rows, out)
        write_samples([entries], out_samples)
        print(rows.to_string())
