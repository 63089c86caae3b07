"""Training throughput of ticlip's training step against open_clip's own trainer.

Usage::

    python benchmarks/bench_train_vs_openclip.py [--samples 6000] [--batch-size 128] [--threads 1]
        [--repeats 3] [--model ticlip-vit-tiny] [--skip 5] [--json runs.json]
        [--openclip-fused-adamw] [--keep DIR] [--passes 1] [--cache-mb MB [MB ...]]

Method
------
1. One year of the synthetic world (``synthesize_world(years=(2014, 2014))``, 32x32 JPEGs,
   img2dataset layout) is written once into a temporary folder; both trainers read the same
   tar list, ``--samples`` (rounded up to a whole number of batches) samples, one pass. With
   ``--passes P`` the shards hold ``--samples / P`` samples (a whole number of batches) and
   each trainer goes over them P times: ticlip's budget is ``--samples`` (its stream starts
   a new pass when the shards run out, as a TiC step whose budget exceeds its data does),
   open_clip_train runs ``--epochs P`` of ``--samples / P``.
2. Each repeat runs both trainers, each in a fresh Python process with the same environment
   (``OMP_NUM_THREADS=MKL_NUM_THREADS=--threads``) and the same settings: model, batch size,
   fp32 on the CPU, AdamW with the same lr, weight decay, betas, eps and parameter groups,
   cosine schedule with the same warm-up, data loading in the training process (ticlip
   streams in-process; open_clip_train gets ``--workers 0``). The order alternates from one
   repeat to the next (ours first, then theirs first, ...) so that drift hits both equally.

   * ticlip: ``ticlip_core.tic.train.train_step(method_name="sequential")`` on one step, with the
     repository's ``config.yaml`` validated against the schema and ``train.log_every: 1``.
     ``--cache-mb`` sets ``train.cache_mb`` (decoded shards kept in memory for later passes;
     default: config.yaml's); given several values, each repeat runs ticlip once per value
     (reported as ``ticlip cache_mb=MB``), so the settings are measured side by side.
   * open_clip_train: ``open_clip_train.main.main`` through a wrapper that first registers the
     project's model configs, with ``--log-every-n-steps 1``, no validation, no zero-shot
     evaluation, no wandb/tensorboard.

What is measured
----------------
Steady-state training throughput: samples / second over training iterations ``skip+1 .. N``
(the first ``--skip`` iterations, which hold the shuffle-buffer fill, allocator and
first-call warm-up, are left out). One iteration's time is the wall time from the end of
the previous iteration to the end of this one, so it covers everything the training loop
does: waiting for the batch (tar reading, JPEG decoding, transforms, tokenisation,
collation), forward, loss, backward, optimiser step, logit-scale clamp and per-iteration
logging. Both trainers time iterations that way and log them every iteration:

* ticlip: the CSV log's windows (``samples_seen`` differences / ``samples_per_s``);
* open_clip_train: its log lines (``Batch (t)`` and the ``N/s`` rate derived from it);
  its ``Data (t)`` (time waiting for the batch) is reported too.

Process start-up, model creation, shard listing and the checkpoint written at the end are
not part of the measure (the whole-process wall time is printed for information). The
figure reported per side is the median over the repeats; the ratio is
median(ticlip) / median(open_clip_train); above 1 means ticlip trains faster. With several
passes, iterations are numbered across open_clip_train's epochs; the time between its epochs
(outside its per-batch clock) is not counted, while ticlip's pass changes fall inside an
iteration, which favours open_clip_train slightly.

Known difference that cannot be removed by flags: ticlip uses ``AdamW(fused=True)``, while
open_clip_train's AdamW is torch's default implementation (not fused on the CPU).
``--openclip-fused-adamw`` patches ``torch.optim.AdamW`` inside the open_clip_train process
to ``fused=True`` to compare like for like. Also by design, open_clip_train uses its
training transform (per-sample RandomResizedCrop + ToTensor + Normalize) and tokenises one
caption at a time; ticlip decodes to uint8 and normalises and tokenises per batch.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STEP = "2014"  # the one time step trained (the synthetic data holds year 2014 only)

# Run inside the open_clip_train process: register ticlip's model configs, make open_clip_train's
# tar reader work with webdataset >= 0.2.96 (which ends every shard with an empty ``{}`` marker
# that open_clip_train's ``group_by_keys_nothrow`` fails on with KeyError 'fname'; the fix is
# ``eof_value=None``: webdataset#384, open_clip#935), optionally make AdamW fused, then hand the
# command line to open_clip_train's own entry point.
OPENCLIP_WRAPPER = """
import functools, sys
from ticlip_core.models import register_model_configs
register_model_configs()
import open_clip_train.data as data
data.tar_file_expander = functools.partial(data.tar_file_expander, eof_value=None)
if sys.argv[1] == '--fused-adamw':
    import torch
    torch.optim.AdamW = functools.partial(torch.optim.AdamW, fused=True)
from open_clip_train.main import main
sys.exit(main(sys.argv[2:]))
"""

# One open_clip_train log line per iteration (``--log-every-n-steps 1``), e.g.
# "Train Epoch: 0 [ 256/6016 (4%)] Data (t): 0.012 Batch (t): 0.345, 371.012/s, 371.012/s/gpu LR: ..."
OPENCLIP_LINE = re.compile(r"Train Epoch: (\d+) \[\s*(\d+)/\s*(\d+) \(\d+%\)\] Data \(t\): ([0-9.]+) "
                           r"Batch \(t\): ([0-9.]+), ([0-9.eE+-]+)/s")


def make_shards(out_dir: Path, samples: int) -> list[str]:
    """Write ``samples`` synthetic samples of year 2014 as webdataset shards; returns the tar paths."""
    sys.path.insert(0, str(REPO))
    from ticlip_core.data.synthetic import synthesize_world

    synthesize_world(str(out_dir), seed=0, years=(2014, 2014), samples_per_year=samples, workers=1)
    tars = sorted(str(p) for p in out_dir.glob("*.tar"))
    if not tars:
        raise RuntimeError(f"no shards written to {out_dir}")
    return tars


def brace_pattern(tars: list[str]) -> str:
    """The ``{00000..000NN}.tar`` brace pattern open_clip_train expects for a run of shards."""
    folder = Path(tars[0]).parent
    names = [Path(t).stem for t in tars]
    if [int(n) for n in names] != list(range(int(names[0]), int(names[0]) + len(names))):
        raise ValueError("shards are not consecutively numbered")
    if len(names) == 1:
        return str(folder / f"{names[0]}.tar")
    return str(folder / f"{{{names[0]}..{names[-1]}}}.tar")


def ticlip_config(model: str, samples: int, batch_size: int, threads: int, cache_mb: float | None = None) -> dict:
    """The repository's ``config.yaml``, validated (defaults filled), set up for one benchmark step
    (``cache_mb`` None: the config's ``train.cache_mb``)."""
    import yaml
    from snakemake.utils import validate

    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    validate(cfg, str(REPO / "ticlip_core" / "schemas" / "config.schema.yaml"))
    cfg["model"].update(name=model, pretrained=None)
    cfg["tic"]["steps"] = [STEP]
    cfg["train"].update(budget_samples=samples, batch_size=batch_size, threads=threads, log_every=1)
    if cache_mb is not None:
        cfg["train"]["cache_mb"] = cache_mb
    return cfg


def child_env(threads: int) -> dict:
    """Environment of both training processes: same thread counts, repository importable, no GPU."""
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), CUDA_VISIBLE_DEVICES="",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
               WANDB_MODE="disabled", TOKENIZERS_PARALLELISM="false")
    return env


def run_process(cmd: list[str], threads: int, log_path: Path) -> float:
    """Run ``cmd`` with its output in ``log_path``; returns its wall time. Raises if it fails."""
    start = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.run(cmd, cwd=REPO, env=child_env(threads), stdout=log, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        tail = "".join(log_path.read_text().splitlines(keepends=True)[-30:])
        raise RuntimeError(f"{cmd[:3]} failed with exit status {proc.returncode}:\n{tail}")
    return seconds


def steady_rate(iter_times: list[tuple[int, int, float]], skip: int, batch_size: int) -> dict:
    """Samples/s over full-batch iterations after the first ``skip``, from ``(iteration, samples, seconds)``."""
    kept = [(n, s) for i, n, s in iter_times if i > skip and n == batch_size]
    if not kept:
        raise RuntimeError(f"no full-batch iteration after the first {skip} to measure")
    samples, seconds = sum(n for n, _ in kept), sum(s for _, s in kept)
    return {"samples_per_s": samples / seconds, "iterations_measured": len(kept), "samples_measured": samples,
            "seconds_measured": seconds, "iterations": len(iter_times)}


def ticlip_label(cache_mb: float | None, args: argparse.Namespace) -> str:
    """The trainer name a ticlip run is reported under: ``ticlip``, or with its ``cache_mb`` when
    several values are compared."""
    return "ticlip" if len(args.cache_mb) == 1 else f"ticlip cache_mb={cache_mb:g}"


def run_ticlip(work: Path, tars: list[str], args: argparse.Namespace, tag: str, cache_mb: float | None = None) -> dict:
    """One ticlip training step in a fresh process (``cache_mb`` None: config.yaml's); returns its
    steady-state throughput."""
    run_dir = work / (f"ticlip-{tag}" if cache_mb is None else f"ticlip-{tag}-cache{cache_mb:g}")
    run_dir.mkdir()
    cfg = ticlip_config(args.model, args.samples, args.batch_size, args.threads, cache_mb)
    spec = {"config": cfg, "tars": tars, "out": str(run_dir)}
    (run_dir / "spec.json").write_text(json.dumps(spec))
    wall = run_process([sys.executable, __file__, "--ticlip-worker", str(run_dir / "spec.json")],
                       args.threads, run_dir / "stdout.txt")
    with open(run_dir / "log.csv") as f:
        rows = list(csv.DictReader(f))
    iter_times, prev_seen, prev_it = [], 0, 0
    for row in rows:  # with log_every 1 every window is one iteration
        it, seen, rate = int(row["iteration"]), int(row["samples_seen"]), float(row["samples_per_s"])
        assert it == prev_it + 1, "ticlip log is not per iteration (train.log_every must be 1)"
        iter_times.append((it, seen - prev_seen, (seen - prev_seen) / rate))
        prev_seen, prev_it = seen, it
    return {"trainer": ticlip_label(cache_mb, args), "cache_mb": cfg["train"]["cache_mb"],
            **steady_rate(iter_times, args.skip, args.batch_size), "wall_s": wall,
            "per_iteration_s": [round(s, 5) for _, _, s in iter_times]}


def ticlip_worker(spec_path: str) -> None:
    """Body of the ticlip process: ``train_step`` on the benchmark shards with the given config."""
    from ticlip_core.tic.train import train_step

    spec = json.loads(Path(spec_path).read_text())
    out = Path(spec["out"])
    train_step(spec["config"], method_name="sequential", step=STEP, shards_by_step={STEP: spec["tars"]},
               init_checkpoint=None, out_model=str(out / "model.pt"), out_log=str(out / "log.csv"),
               out_compute=str(out / "compute.json"))


def openclip_command(pattern: str, logs: Path, args: argparse.Namespace, cfg: dict) -> list[str]:
    """The open_clip_train command line with the same settings as ticlip's training step."""
    tcfg = cfg["train"]
    return [sys.executable, "-c", OPENCLIP_WRAPPER, "--fused-adamw" if args.openclip_fused_adamw else "--stock",
            "--train-data", pattern, "--dataset-type", "webdataset",
            "--train-num-samples", str(args.samples // args.passes),
            "--batch-size", str(args.batch_size), "--epochs", str(args.passes), "--workers", "0",
            "--model", args.model, "--precision", "fp32", "--device", "cpu",
            "--lr", str(tcfg["lr"]), "--wd", str(tcfg["weight_decay"]), "--warmup", str(tcfg["warmup_iterations"]),
            # torch's AdamW defaults, which ticlip uses (open_clip_train's ViT defaults: 0.98, 1e-6)
            "--beta1", "0.9", "--beta2", "0.999", "--eps", "1e-8",
            "--seed", str(cfg["seed"]), "--logs", str(logs), "--name", "run", "--report-to", "",
            "--save-frequency", "0", "--zeroshot-frequency", "0", "--val-frequency", "0",
            "--log-every-n-steps", "1"]


def run_openclip(work: Path, pattern: str, args: argparse.Namespace, tag: str) -> dict:
    """One epoch of open_clip_train in a fresh process; returns its steady-state throughput."""
    run_dir = work / f"openclip-{tag}"
    run_dir.mkdir()
    cfg = ticlip_config(args.model, args.samples, args.batch_size, args.threads)
    wall = run_process(openclip_command(pattern, run_dir / "logs", args, cfg), args.threads, run_dir / "stdout.txt")
    iter_times, data_times = [], []
    per_epoch = args.samples // args.passes // args.batch_size
    for line in (run_dir / "logs" / "run" / "out.log").read_text().splitlines():
        if m := OPENCLIP_LINE.search(line):
            epoch, seen, data_t, rate = int(m[1]), int(m[2]), float(m[4]), float(m[6])
            it = epoch * per_epoch + seen // args.batch_size
            iter_times.append((it, args.batch_size, args.batch_size / rate))  # rate = batch / this batch's time
            data_times.append((it, data_t))
    if [i for i, _, _ in iter_times] != list(range(1, len(iter_times) + 1)):
        raise RuntimeError("open_clip_train did not log every iteration")
    result = steady_rate(iter_times, args.skip, args.batch_size)
    data_s = sum(d for i, d in data_times if i > args.skip)
    return {"trainer": "open_clip_train", **result, "wall_s": wall, "data_wait_fraction": data_s / result["seconds_measured"],
            "per_iteration_s": [round(s, 5) for _, _, s in iter_times]}


def repeat_ratios(runs: list[dict], ours: str = "ticlip") -> list[float]:
    """``ours`` / open_clip_train samples/s of each repeat (runs made one after the other)."""
    by_repeat = {}
    for r in runs:
        by_repeat.setdefault(r["repeat"], {})[r["trainer"]] = r["samples_per_s"]
    return [v[ours] / v["open_clip_train"] for _, v in sorted(by_repeat.items())
            if ours in v and "open_clip_train" in v]


def print_table(runs: list[dict], medians: dict[str, float], args: argparse.Namespace) -> None:
    """Per-run figures, medians and the ratio of each ticlip setting to open_clip_train."""
    print(f"\nmodel {args.model}, batch {args.batch_size}, {args.samples} samples/run "
          f"({args.samples // args.batch_size} iterations, first {args.skip} skipped; {args.passes} pass(es) over "
          f"{args.samples // args.passes} samples), threads {args.threads}, fp32 CPU")
    width = max(16, *(len(t) for t in medians))
    print(f"{'repeat':>6}  {'trainer':<{width}} {'samples/s':>10} {'iters':>6} {'loop s':>8} {'process s':>10}")
    for r in runs:
        print(f"{r['repeat']:>6}  {r['trainer']:<{width}} {r['samples_per_s']:>10.1f} {r['iterations_measured']:>6} "
              f"{r['seconds_measured']:>8.2f} {r['wall_s']:>10.2f}")
    for trainer, median in medians.items():
        print(f"median  {trainer:<{width}} {median:>10.1f}")
    opt = "fused (patched)" if args.openclip_fused_adamw else "torch default, not fused"
    print(f"optimiser: ticlip AdamW(fused=True); open_clip_train AdamW {opt}")
    for ours in (t for t in medians if t != "open_clip_train"):
        print(f"{ours}: per-repeat ratios " + ", ".join(f"{x:.2f}" for x in repeat_ratios(runs, ours))
              + " (a busy machine moves both sides; these pair the runs made next to each other)")
        print(f"ratio ({ours} / open_clip_train) = {medians[ours] / medians['open_clip_train']:.2f}")


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=6000, help="training samples per run (rounded up to whole batches)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=1, help="torch/OpenMP threads of both trainers")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--model", default="ticlip-vit-tiny")
    p.add_argument("--skip", type=int, default=5, help="warm-up iterations left out of the measure")
    p.add_argument("--json", help="write all runs and the summary to this JSON file")
    p.add_argument("--openclip-fused-adamw", action="store_true",
                   help="make open_clip_train's AdamW fused like ticlip's (patched in its process)")
    p.add_argument("--keep", help="work in this (new) folder and keep logs and shards instead of a temporary one")
    p.add_argument("--passes", type=int, default=1,
                   help="passes over the data: the shards hold --samples / passes samples (whole batches)")
    p.add_argument("--cache-mb", type=float, nargs="+", default=[None], metavar="MB",
                   help="ticlip's train.cache_mb (default: config.yaml's); several values: one ticlip run each per repeat")
    p.add_argument("--ticlip-worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.passes < 1:
        p.error("--passes must be at least 1")
    if any(mb is not None and mb < 0 for mb in args.cache_mb):
        p.error("--cache-mb values must be >= 0")
    if len(set(args.cache_mb)) != len(args.cache_mb):
        p.error("--cache-mb values must differ")
    args.samples = math.ceil(args.samples / args.passes / args.batch_size) * args.batch_size * args.passes
    if args.samples // args.batch_size <= args.skip:
        p.error(f"--samples gives {args.samples // args.batch_size} iterations, not more than --skip {args.skip}")
    return args


def benchmark(work: Path, args: argparse.Namespace) -> dict:
    """Make the shards, run the alternating repeats, print and return the results."""
    t0 = time.perf_counter()
    data = args.samples // args.passes
    tars = make_shards(work / "shards", data)
    print(f"{data} samples in {len(tars)} shards written in {time.perf_counter() - t0:.1f} s", flush=True)
    pattern = brace_pattern(tars)
    runs = []
    trainers = [*args.cache_mb, "open_clip_train"]  # each cache_mb value stands for a ticlip run
    for r in range(args.repeats):
        order = trainers if r % 2 == 0 else trainers[::-1]
        for trainer in order:
            tag = f"r{r}"
            res = (run_openclip(work, pattern, args, tag) if trainer == "open_clip_train"
                   else run_ticlip(work, tars, args, tag, trainer))
            res["repeat"] = r + 1
            runs.append(res)
            print(f"repeat {r + 1}/{args.repeats} {res['trainer']:<16} {res['samples_per_s']:8.1f} samples/s "
                  f"(process {res['wall_s']:.1f} s)", flush=True)
    names = [ticlip_label(mb, args) for mb in args.cache_mb] + ["open_clip_train"]
    medians = {t: statistics.median(r["samples_per_s"] for r in runs if r["trainer"] == t) for t in names}
    print_table(runs, medians, args)
    ratios = {t: medians[t] / medians["open_clip_train"] for t in names[:-1]}
    summary = {"settings": {k: v for k, v in vars(args).items() if k not in ("ticlip_worker", "json", "keep")},
               "environment": environment(), "runs": runs, "median_samples_per_s": medians}
    if len(ratios) == 1:  # the record's shape before --cache-mb took several values
        summary.update(ratio=ratios["ticlip"], repeat_ratios=repeat_ratios(runs))
    else:
        summary.update(ratios=ratios, repeat_ratios={t: repeat_ratios(runs, t) for t in ratios})
    return summary


def environment() -> dict:
    """Versions and machine, for the JSON record."""
    import open_clip
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "open_clip": open_clip.__version__,
            "machine": platform.machine(), "processor": platform.processor(), "cpus": os.cpu_count()}


def main(argv=None) -> None:
    """Run the benchmark (or, with the hidden ``--ticlip-worker``, one ticlip training process)."""
    args = parse_args(argv)
    if args.ticlip_worker:
        ticlip_worker(args.ticlip_worker)
        return
    if args.keep:
        work = Path(args.keep)
        work.mkdir(parents=True)
        summary = benchmark(work, args)
    else:
        with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
            summary = benchmark(Path(tmp), args)
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
        print(f"runs written to {args.json}")


if __name__ == "__main__":
    main()
