"""Entry point: the CL-CLIP update task (class-labelled crops, MST sessions), held-out
zero-shot classes and the retrieval pool, rendered from the synthetic world or read from
COCO / tiered-ImageNet."""
import json

from ticlip_core.clclip.classes import coco_class_plan, synthetic_class_plan
from ticlip_core.clclip.real_task import build_real_task
from ticlip_core.clclip.synthetic_task import build_synthetic_task
from ticlip_core.config_checks import model_image_size
from ticlip_core.workflow_io import logged

with logged(snakemake.log[0]):
    data, seed, out = snakemake.params.data, snakemake.params.seed, snakemake.output[0]
    image_size = model_image_size(snakemake.params.model)
    if data["source"] == "synthetic":
        syn = data["synthetic"]
        plan = synthetic_class_plan(syn["num_update"], syn["num_sessions"], syn["num_zs_test"], syn["num_zs_val"],
                                    seed)
        summary = build_synthetic_task(out, plan, seed=seed, image_size=image_size,
                                       crops_per_class=syn["crops_per_class"], zs_per_class=syn["zs_per_class"],
                                       retrieval_pairs=syn["retrieval_pairs"], render_size=syn["render_size"])
    else:
        real = data["real"]
        plan = coco_class_plan(real["zs_test_classes"], real["zs_val_classes"])
        # each dataset: {format, path, options}; options go to its loader (e.g. imagefolder's classnames file)
        datasets = {k: (real[k]["format"], real[k]["path"], real[k].get("options", {}))
                    for k in ("update", "zero_shot", "retrieval")}
        # docs/clclip.md: validation images, training images and per-split caps against the paper's
        summary = build_real_task(out, plan, update_dataset=datasets["update"], zs_dataset=datasets["zero_shot"],
                                  retrieval_dataset=datasets["retrieval"], image_size=image_size, seed=seed,
                                  update_val=real["update_val"], val_fraction=real["val_fraction"],
                                  train_restval=real["train_restval"], max_per_class=real["max_per_class"])
    print(json.dumps(summary, indent=2, default=str))
