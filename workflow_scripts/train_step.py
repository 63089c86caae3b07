"""Entry point: train one (run, step) and write its checkpoint, log and compute record
(in this process, or in one process per GPU / ``train.processes`` under torchrun)."""
from pathlib import Path

from ticlip_core.data.layout import step_shards
from ticlip_core.engine.launch import run_training
from ticlip_core.workflow_io import logged

with logged(snakemake.log[0]):
    # params.cfg: exactly the config this job reads, with the run's overrides (ticlip_core.job_config)
    config, step, steps_dir = snakemake.params.cfg, snakemake.params.step, snakemake.input.steps_dir
    steps = config["tic"]["steps"]
    job = dict(
        config=config, method_name=snakemake.params.method, run_name=snakemake.params.run, step=step,
        shards_by_step={s: step_shards(steps_dir, s, "train") for s in steps},
        val_shards_by_step={s: step_shards(steps_dir, s, "val") for s in steps},
        init_checkpoint=snakemake.input.get("init"), init_optimizer=snakemake.input.get("init_optimizer"),
        out_model=snakemake.output.model, out_log=snakemake.output.log, out_compute=snakemake.output.compute,
        out_optimizer=snakemake.output.get("optimizer"))
    processes = int(snakemake.resources.get("gpu", 0) or 0) or config["train"]["processes"]
    print(run_training(job, processes, Path(snakemake.output.model).with_name("job.json")))
