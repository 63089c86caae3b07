"""One memclip method on one benchmark: a chain of tasks per memory size and grid point, the
grid point chosen on validation, and long-format evaluation rows.

For every memory size M (one run, M = None, for a method that uses no memory) and every point
of the method's grid (``memclip.grids.<method>``: learning rate, epochs or the method's own
options, every combination), the starting CLIP is trained task after task on what the method
sees (the task's data plus the memory the plan holds while that task trains, or every task's
data so far). After each task the model is scored on the test samples of every task seen so
far, among every class seen so far (A[t][j] and A_t); after the last task also on the
validation samples. The grid point with the best validation A_T is kept per M (the first of
equals); its test rows are written, with the per-sample entries behind each of them
(``chain_samples``), and every point's validation A_T is recorded.
"""
from __future__ import annotations

import copy
import itertools
import json

import numpy as np
import pandas as pd
import torch

from ticlip_core import rows as row_schema
from ticlip_core import samples
from ticlip_core.data.pixels import PixelSpec
from ticlip_core.engine.chain_store import ChainStore, say_resumed
from ticlip_core.engine.compute import tower_macs
from ticlip_core.engine.distributed import init_world
from ticlip_core.engine.loop import use_threads
from ticlip_core.engine.seeds import derived_seed
from ticlip_core.memclip.benchmark import SplitImages, load_benchmark, load_table
from ticlip_core.memclip.evaluate import TASK_ACC, evaluate_seen
from ticlip_core.memclip.methods import get_method
from ticlip_core.memclip.methods.base import TaskContext, TaskData
from ticlip_core.memclip.train import train_task
from ticlip_core.metrics import average_incremental_accuracy, forgetting, last_accuracy
from ticlip_core.models import load_start_model

#: grid keys that are training settings rather than method options
TRAIN_KEYS = ("lr", "epochs")


def grid_points(grid: dict) -> list[dict]:
    """Every combination of the grid's values, in the grid's key order (``[{}]`` for no grid)."""
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def describe_point(point: dict) -> str:
    """``"lr=0.0001,tau=0.05"`` (row schema NA for an empty point)."""
    return ",".join(f"{k}={v}" for k, v in point.items()) or row_schema.NA


def load_data(data_dir: str) -> dict:
    """The prepared benchmark: its description, the three tables and their pixels."""
    return {"benchmark": load_benchmark(data_dir),
            **{f"{split}_table": load_table(data_dir, split) for split in ("train", "val", "test")},
            **{f"{split}_images": SplitImages(data_dir, split) for split in ("train", "val", "test")}}


def run_chain(cfg: dict, data: dict, *, method_name: str, memory: list[list[int]] | None, memory_size: int | None,
              point: dict, base_checkpoint: str | None, device, store: ChainStore | None = None,
              index: int = 0) -> list[dict]:
    """Train the starting model through every task with one method, memory and grid point;
    returns one record per task: the training statistics, the test scores (the last task's
    also the validation scores) and the test samples' outcomes (``test_samples``: the
    ``evaluate_seen(..., per_sample=True)`` outcomes). With a ``store``, each finished task is persisted there, and a
    chain the store holds resumes after its last finished task (the method's estimators
    included)."""
    mcfg, tcfg = cfg["memclip"], cfg["memclip"]["train"]
    bench = data["benchmark"]
    options = {**mcfg["method_options"].get(method_name, {}), **{k: v for k, v in point.items() if k not in TRAIN_KEYS}}
    method = get_method(method_name, **options)
    # zero-shot reads no training setting (its job is not handed them)
    lr, epochs = (point.get("lr", tcfg["lr"]), int(point.get("epochs", tcfg["epochs"]))) if method.trains else (0, 0)
    model, tokenizer = load_start_model(mcfg["model"], base_checkpoint, device, cfg["seed"])
    tasks, path, key, saved = [], None, None, None
    variant = row_schema.text(memory_size)
    # a method's own draws (heads, augmentations) come from the global generator, which a new
    # process seeds at random: seed it per chain, so a job's results do not depend on the process
    torch.manual_seed(derived_seed(cfg["seed"], "memclip", bench.name, method_name, variant, index))
    if store is not None:
        path, key = store.chain_key(setting=bench.name, label=method_name, variant=variant, index=index,
                                    options={**options, "lr": lr, "epochs": epochs})
        saved = store.load(path, key)
    if saved is not None:
        tasks = saved["sessions"]
        say_resumed(f"{method_name} {bench.name} M={memory_size} ({describe_point(point)})", len(tasks), path)
        if saved["done"]:
            return tasks
        model.load_state_dict(saved["model"])
        method.load_state_dict(saved["method_state"])
        torch.set_rng_state(saved["torch_rng"])
    image_macs, text_macs = tower_macs(model) if method.trains else (0, 0)
    train_table = data["train_table"]
    last = bench.num_tasks - 1
    for t in range(len(tasks), last + 1):
        seen = bench.seen_classes(t)
        ctx = TaskContext(t=t, steps=[s.name for s in bench.tasks], model=model, tokenizer=tokenizer, device=device,
                          benchmark=bench.name, scenario=bench.scenario, classnames=bench.classnames,
                          seen_classes=seen, num_train_samples=len(train_table), memory_size=memory_size,
                          templates=mcfg["templates"], image_macs=image_macs)
        stats = {}
        if method.trains:
            task_of_row, planned = train_table["task"].to_numpy(), memory[t] if memory else []
            seed = derived_seed(cfg["seed"], "memclip", bench.name, t)
            ctx.data = TaskData(images=data["train_images"], labels=train_table["label"].to_numpy(),
                                task_rows=[int(r) for r in (task_of_row == t).nonzero()[0]], memory_rows=list(planned),
                                batch_size=tcfg["batch_size"], seed=seed, device=device, pixels=PixelSpec.of(model),
                                workers=tcfg["workers"])
            rows = method.training_rows(t, task_of_row, planned)
            stats = train_task(ctx, method, data["train_images"], train_table["label"].to_numpy(), rows,
                               epochs=epochs, batch_size=tcfg["batch_size"], lr=lr,
                               weight_decay=tcfg["weight_decay"], seed=seed,
                               settings=tcfg, resume_path=store.resume_path if store is not None else None,
                               fingerprint=f"{key}:task {t}", image_macs=image_macs, text_macs=text_macs)
            stats["memory_rows"] = len(set(rows) - set(ctx.data.task_rows))
            ctx.data = None
        common = dict(t=t, seen_classes=seen, classnames=bench.classnames, templates=mcfg["templates"], device=device,
                      batch_size=tcfg["eval_batch_size"], workers=tcfg["workers"], scorer=method.scorer(ctx))
        test, outcomes = evaluate_seen(model, tokenizer, data["test_images"], data["test_table"], per_sample=True,
                                       source=f"{method_name} on {bench.name} test after task {t}", **common)
        scores = {"test": test}
        if t == last:
            scores["val"] = evaluate_seen(model, tokenizer, data["val_images"], data["val_table"],
                                          source=f"{method_name} on {bench.name} val after task {t}", **common)
        tasks.append(json.loads(json.dumps({"task": t, **stats, "scores": scores, "test_samples": outcomes})))
        if store is not None:
            store.save(path, key, sessions=tasks, info={}, done=t == last, torch_rng=torch.get_rng_state(),
                       model_state={k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
                       method_state=method.state_dict())
    return tasks


def summary_scores(tasks: list[dict], split: str = "test") -> dict[str, float]:
    """Last (A_T), Avg (mean over t of A_t) and Forgetting of a finished chain on the test split
    (``ticlip_core.metrics``; forgetting needs two or more tasks)."""
    accs = [t["scores"][split]["acc_seen"] for t in tasks]
    n = len(tasks)
    matrix = [[t["scores"][split].get(f"{TASK_ACC}{j}", float("nan")) for j in range(n)] for t in tasks]
    out = {"last": last_accuracy(accs), "avg": average_incremental_accuracy(accs)}
    if n >= 2:
        out["forgetting"] = forgetting(matrix)
    return out


def _labels(benchmark: str, method: str, memory_size: int | None, point: dict) -> dict:
    """The label columns every row of one chain shares."""
    return {"study": "memclip", "scenario": benchmark, "method": method, "variant": memory_size,
            "hyperparameter": ",".join(point) or None, "chosen": describe_point(point) if point else None}


def chain_rows(tasks: list[dict], *, benchmark: str, method: str, memory_size: int | None, point: dict) -> list[dict]:
    """The test rows of a finished chain in the one schema: A[t][j] (task ``task``, eval_step j,
    metric ``acc``) and A_t (task ``seen``, metric ``acc``) after every task t, and the final
    Last, Avg and Forgetting (train_step ``final``)."""
    base = _labels(benchmark, method, memory_size, point)
    rows = []
    for record in tasks:
        test = record["scores"]["test"]
        for name, value in test.items():
            if name.startswith(TASK_ACC):
                rows += row_schema.make_rows({**base, "train_step": record["task"], "task": "task",
                                              "eval_step": name[len(TASK_ACC):]}, {"acc": value})
        rows += row_schema.make_rows({**base, "train_step": record["task"], "task": "seen"}, {"acc": test["acc_seen"]})
    return rows + row_schema.make_rows({**base, "train_step": row_schema.FINAL_STEP, "task": "seen"},
                                       summary_scores(tasks))


def test_sample_set(benchmark: str) -> str:
    """The name of a benchmark's test samples (``ticlip_core.samples``): sample ``i`` is row ``i`` of
    its prepared test table, the same for every method, memory size and grid point."""
    return f"memclip/{benchmark}/test"


def chain_samples(tasks: list[dict], *, benchmark: str, method: str, memory_size: int | None, point: dict,
                  set_size: int) -> list[pd.DataFrame]:
    """The entries (``ticlip_core.samples``) of every row ``chain_rows`` writes, on the benchmark's
    test samples (``test_sample_set``, ``set_size`` of them), each entry's outcome a sample's credit
    (1/0, or a tie's expected credit): A[t][j] and A_t over their samples; Last as A_T; Avg the A_t
    combined with weight 1/T each; Forgetting, per old task j, the outcome of model l* minus that
    of the last model on task j's samples, combined over j with weight 1/(T-1). l* = argmax over
    j <= l < T-1 of A[l][j] is fixed at the full sample (the first of equals): a resample of the
    entries keeps it, so it bootstraps max_l A[l][j] with the argmax held fixed."""
    name, base = test_sample_set(benchmark), _labels(benchmark, method, memory_size, point)
    cells, seen = {}, []
    for record in tasks:
        t, out = record["task"], record.get("test_samples")
        if out is None:
            raise ValueError(f"{method} on {benchmark} (M={memory_size}): task {t}'s record has no per-sample "
                             "outcomes (a work folder from before they were kept); remove the job's .work folder")
        rows, of_task, credit = (np.asarray(out[k]) for k in ("rows", "task", "credit"))
        for j in np.unique(of_task):
            on = of_task == j
            cells[t, int(j)] = samples.entries({**base, "train_step": t, "task": "task", "eval_step": int(j),
                                                "metric": "acc"}, name, set_size, credit[on], sample=rows[on])
        seen.append(samples.entries({**base, "train_step": t, "task": "seen", "metric": "acc"}, name, set_size,
                                    credit, sample=rows))
    final = {**base, "train_step": row_schema.FINAL_STEP, "task": "seen"}
    n = len(tasks)
    parts = [*cells.values(), *seen, samples.combine(seen[-1:], [1.0], {**final, "metric": "last"}),
             samples.combine(seen, [1 / n] * n, {**final, "metric": "avg"})]
    if n >= 2:
        row = {**final, "metric": "forgetting"}
        acc = [t["scores"]["test"] for t in tasks]
        best = [j + int(np.argmax([acc[l][f"{TASK_ACC}{j}"] for l in range(j, n - 1)])) for j in range(n - 1)]
        parts.append(samples.combine([samples.difference(cells[l, j], cells[n - 1, j], row)
                                      for j, l in enumerate(best)], [1 / (n - 1)] * (n - 1), row))
    return parts


def chain_compute(tasks: list[dict]) -> dict:
    """Samples, training MACs and seconds of a chain, summed over its tasks."""
    return {k: sum(t.get(k, 0) for t in tasks) for k in ("samples", "macs", "seconds")}


def run_method(cfg: dict, *, benchmark_dir: str, memory_file: str | None, method_name: str,
               base_checkpoint: str | None, device=None, store: ChainStore | None = None
               ) -> tuple[list[dict], dict, list[dict], list[pd.DataFrame]]:
    """Every memory size of ``method_name`` on one benchmark, each with its grid point chosen by
    validation A_T. Returns the rows, the record of the choices (every point's validation A_T),
    one compute record per memory size (the chosen chain's samples, MACs and seconds, and the
    MACs of the whole grid search) and the rows' per-sample entries (``chain_samples``)."""
    mcfg = cfg["memclip"]
    use_threads(mcfg["train"])
    device = torch.device(device) if device is not None else init_world().device()
    data = load_data(benchmark_dir)
    bench = data["benchmark"]
    method = get_method(method_name, **mcfg["method_options"].get(method_name, {}))
    grid = mcfg["grids"].get(method_name, {}) if method.trains else {}
    bad = sorted(set(grid) - set(TRAIN_KEYS) - set(method.defaults))
    if bad:
        raise ValueError(f"memclip.grids.{method_name}: {bad} are neither {list(TRAIN_KEYS)} nor options of "
                         f"{method_name} ({sorted(method.defaults) or 'none'})")
    plans = {None: None}
    if method.uses_memory:
        with open(memory_file) as f:
            saved = json.load(f)["plans"]
        plans = {int(m): saved[str(m)] for m in mcfg["benchmark"]["memory_sizes"]}
    rows, record, compute, entries = [], {}, [], []
    points = grid_points(grid)
    for memory_size, memory in plans.items():
        tried = []
        for index, point in enumerate(points):
            tasks = run_chain(cfg, data, method_name=method_name, memory=memory, memory_size=memory_size,
                              point=point, base_checkpoint=base_checkpoint, device=device, store=store, index=index)
            tried.append((point, tasks, tasks[-1]["scores"]["val"]["acc_seen"]))
        best = max(range(len(tried)), key=lambda i: (tried[i][2], -i))
        point, tasks, _ = tried[best]
        label = row_schema.text(memory_size)
        record[label] = {"grid": copy.deepcopy(grid), "chosen": point,
                         "val_last": {describe_point(p): v for p, _, v in tried}}
        compute.append({"benchmark": bench.name, "method": method_name, "memory": label, **chain_compute(tasks),
                        "search_macs": sum(chain_compute(t)["macs"] for _, t, _ in tried)})
        rows += chain_rows(tasks, benchmark=bench.name, method=method_name, memory_size=memory_size, point=point)
        entries += chain_samples(tasks, benchmark=bench.name, method=method_name, memory_size=memory_size,
                                 point=point, set_size=len(data["test_table"]))
    return rows, record, compute, entries
