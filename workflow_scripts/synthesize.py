"""Entry point: render the synthetic world (or its static evaluation set) as img2dataset shards."""
import json

from ticlip_core.data.synthetic import synthesize_static, synthesize_world
from ticlip_core.workflow_io import logged

with logged(snakemake.log[0]):
    cfg, seed = snakemake.params.cfg, snakemake.params.seed
    common = dict(seed=seed, image_size=cfg["image_size"], samples_per_shard=cfg["samples_per_shard"],
                  workers=snakemake.threads)
    if snakemake.params.get("static", False):
        summary = synthesize_static(snakemake.output[0], num_samples=cfg["static_samples"], **common)
    else:
        summary = synthesize_world(snakemake.output[0], years=tuple(cfg["years"]),
                                   samples_per_year=cfg["samples_per_year"], typical_colour=cfg["typical_colour"],
                                   **common)
    print(json.dumps(summary, indent=2, default=str))
