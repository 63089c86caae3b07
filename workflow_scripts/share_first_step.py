"""Entry point: give one run the shared first step (its checkpoint, log and compute record)."""
import json

from ticlip_core.tic.first_step import copy_first_step
from ticlip_core.workflow_io import logged

with logged(snakemake.log[0]):
    record = copy_first_step(model=snakemake.input.model, log=snakemake.input.log, compute=snakemake.input.compute,
                             run_name=snakemake.wildcards.run, method_name=snakemake.params.method,
                             out_model=snakemake.output.model, out_log=snakemake.output.log,
                             out_compute=snakemake.output.compute, optimizer=snakemake.input.get("optimizer"),
                             out_optimizer=snakemake.output.get("optimizer"))
    print(json.dumps(record, indent=2))
