"""Entry point: the base pool of the clclip study's original CLIP (captioned scenes and object crops of the synthetic world)."""
import json

from ticlip_core.clclip.base_pool import build_synthetic_base_pool
from ticlip_core.config_checks import model_image_size
from ticlip_core.workflow_io import logged

with logged(snakemake.log[0]):
    p = snakemake.params
    summary = build_synthetic_base_pool(snakemake.output[0], num_samples=p.samples, seed=p.seed,
                                        scene_fraction=p.scene_fraction,
                                        image_size=model_image_size(p.model), render_size=p.render_size,
                                        workers=snakemake.threads)
    print(json.dumps(summary, indent=2))
