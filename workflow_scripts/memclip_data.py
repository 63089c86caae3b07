"""Entry point: one memclip benchmark prepared (tasks, train/val/test tables and pixels), rendered
from the synthetic world or indexed from a dataset on disk (CIFAR-100, ImageNet, DomainNet)."""
import json

from ticlip_core.memclip.real_benchmark import build_real_benchmark
from ticlip_core.memclip.synthetic_benchmark import build_synthetic_benchmark
from ticlip_core.config_checks import model_image_size
from ticlip_core.workflow_io import logged

with logged(snakemake.log[0]):
    cfg = snakemake.params.cfg
    bench, seed, out = cfg["memclip"]["benchmark"], cfg["seed"], snakemake.output[0]
    image_size = model_image_size(cfg["memclip"]["model"]["name"])
    order_seed = bench["class_order_seed"] if bench["class_order_seed"] is not None else seed
    if bench["source"] == "synthetic":
        syn = bench["synthetic"]
        summary = build_synthetic_benchmark(
            out, name=bench["name"], scenario=bench["scenario"], seed=seed, num_classes=syn["num_classes"],
            num_tasks=bench["num_tasks"], per_class=syn["per_class"], domains=bench["domain_order"],
            class_order_seed=order_seed, val_fraction=syn["val_fraction"], test_fraction=syn["test_fraction"],
            image_size=image_size, render_size=syn["render_size"])  # 1-2 s in one process
    else:
        real = bench["real"]
        summary = build_real_benchmark(
            out, name=bench["name"], scenario=bench["scenario"], format=real["format"], path=real["path"],
            options=real["options"], num_tasks=bench["num_tasks"], class_order_seed=order_seed,
            domain_order=bench["domain_order"], val_fraction=real["val_fraction"], image_size=image_size,
            train_split=real["train_split"], test_split=real["test_split"],
            max_per_class={k: v for k, v in real["max_per_class"].items() if v is not None} or None)
    print(json.dumps(summary, indent=1, default=str)[:4000])
