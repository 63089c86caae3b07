"""Entry point: train the clclip study's original CLIP on the base pool's shards."""
from pathlib import Path

from ticlip_core.clclip.base_model import train_base
from ticlip_core.workflow_io import logged

with logged(snakemake.log[0]):
    shards = sorted(str(p) for p in Path(snakemake.input.pool).glob("*.tar"))
    print(train_base(snakemake.params.cfg, shards=shards, out_model=snakemake.output.model,
                     out_log=snakemake.output.log, out_compute=snakemake.output.compute))
