"""Entry point: train one (method, step) and write its checkpoint, log and compute record."""
from ticlip_core.data.bucketing import step_shards
from ticlip_core.train import train_step
from ticlip_core.workflow_io import logged

with logged(snakemake.log[0]):
    config, method, step = snakemake.config, snakemake.wildcards.method, snakemake.wildcards.step
    summary = train_step(
        config, method_name=method, step=step,
        shards_by_step={s: step_shards(snakemake.input.steps_dir, s, "train") for s in config["tic"]["steps"]},
        init_checkpoint=snakemake.input.get("init"),
        out_model=snakemake.output.model, out_log=snakemake.output.log, out_compute=snakemake.output.compute)
    print(summary)
