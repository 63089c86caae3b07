"""GPU training throughput of ViT-B/32 at batch 256: a plain step and an LwF step (with its teacher).

Usage: python benchmarks/bench_gpu_train.py [--model ViT-B-32] [--batch 256] [--iters 30] [--repeats 3]
       [--precision bf16] [--no-compile]

Random images and token ids (the model's cost, not the data loader's), the pipeline's fast paths
(``ticlip_core.engine.speed``: bf16 autocast, TF32, channels-last, optional torch.compile), fused AdamW
and open_clip's ClipLoss; LwF adds the frozen teacher's forward pass and the similarity-matrix KL
(``ticlip_core.losses``). Prints, as JSON, the median samples/s over the repeats (after warm-up
iterations) and the peak GPU memory of each. Needs CUDA; exits with a message otherwise.
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time

import open_clip
import torch


def run(model_name: str, batch: int, iters: int, repeats: int, tcfg: dict, lwf: bool) -> dict:
    from ticlip_core.losses import similarity_distillation_loss, similarity_logits
    from ticlip_core.models import create_model
    from ticlip_core.engine.speed import autocast, prepare_images, prepare_model

    device = torch.device("cuda")
    model, *_ = create_model(model_name, None, device=device)
    teacher = copy.deepcopy(model).eval().requires_grad_(False) if lwf else None
    forward = prepare_model(model, tcfg, device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    loss_fn = open_clip.ClipLoss()
    size = model.visual.image_size[0] if isinstance(model.visual.image_size, tuple) else model.visual.image_size
    images = torch.randn(batch, 3, size, size)
    texts = torch.randint(0, 49408, (batch, 77), device=device)

    def one():
        x = prepare_images(images, tcfg, device)
        with autocast(tcfg, device):
            out = forward(x, texts)
            loss = loss_fn(out["image_features"], out["text_features"], out["logit_scale"])
            if teacher is not None:
                with torch.inference_mode():
                    t = teacher(x, texts)
                    t_logits = similarity_logits(t["image_features"], t["text_features"], t["logit_scale"])
                s_logits = similarity_logits(out["image_features"], out["text_features"], out["logit_scale"])
                loss = loss + similarity_distillation_loss(s_logits, t_logits.clone())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(5):  # warm-up (and compilation)
        one()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(iters):
            one()
        torch.cuda.synchronize()
        rates.append(batch * iters / (time.perf_counter() - start))
    return {"samples_per_s": round(statistics.median(rates), 1), "runs": [round(r, 1) for r in rates],
            "peak_gpu_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--precision", default="bf16", choices=["fp32", "bf16"])
    parser.add_argument("--no-compile", action="store_true")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench_gpu_train.py needs a CUDA GPU; none is visible")
    tcfg = {"precision": args.precision, "tf32": True, "channels_last": True, "compile": not args.no_compile,
            "grad_checkpointing": False}
    result = {"device": torch.cuda.get_device_name(), "model": args.model, "batch": args.batch, "settings": tcfg,
              "plain": run(args.model, args.batch, args.iters, args.repeats, tcfg, lwf=False),
              "lwf": run(args.model, args.batch, args.iters, args.repeats, tcfg, lwf=True)}
    result["lwf_over_plain_time"] = round(result["plain"]["samples_per_s"] / result["lwf"]["samples_per_s"], 3)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
