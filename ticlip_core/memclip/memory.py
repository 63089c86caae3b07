"""The fixed memory of memclip (docs/memclip.md, after the paper's Sec. 3.1-3.2): a constant total
size M, an equal number of randomly drawn training samples per group seen so far; after each
task every old group is cut down at random to make room for the new groups.

A *group* generalises the paper's "class":

* class-incremental (``scenario="class"``): group = ``label``;
* domain-incremental (``scenario="domain"``): group = ``(task, label)``, the task being the
  domain. Every class is seen from the first task on, so balancing over classes alone would
  never make room for a new domain; balancing over (domain, class) pairs gives each domain seen
  so far its share of the memory.

The plan is computed from the train table alone (columns ``key, label, task, domain, index``), so
it is deterministic and independent of the model, the loader and every other random draw.
"""
from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
import pandas as pd

SCENARIOS = ("class", "domain")
COLUMNS = ("key", "label", "task", "domain", "index")


def _check(table: pd.DataFrame, num_tasks, scenario: str) -> None:
    if scenario not in SCENARIOS:
        raise ValueError(f"memory: unknown scenario {scenario!r}; known: {list(SCENARIOS)}")
    if isinstance(num_tasks, bool) or not isinstance(num_tasks, (int, np.integer)) or num_tasks < 1:
        raise ValueError(f"memory: num_tasks must be an int >= 1, got {num_tasks!r}")
    if not isinstance(table, pd.DataFrame):
        raise ValueError(f"memory: table must be a pandas DataFrame, got {type(table).__name__}")
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"memory: the train table lacks column(s) {missing}; has {list(table.columns)}")
    tasks = table["task"].to_numpy()
    bad = sorted({int(t) for t in tasks if not 0 <= int(t) < num_tasks})
    if bad:
        raise ValueError(f"memory: task id(s) {bad} out of range for num_tasks={num_tasks} (0..{num_tasks - 1})")
    dup = table["index"][table["index"].duplicated()]
    if len(dup):
        raise ValueError(f"memory: the train table repeats index value(s) {sorted(set(dup.tolist()))[:5]}")


def _groups(table: pd.DataFrame, scenario: str) -> list[Hashable]:
    """The group of each row: its label (class) or (task, label) (domain)."""
    labels = [int(v) for v in table["label"]]
    if scenario == "class":
        return labels
    return list(zip((int(v) for v in table["task"]), labels))


def group_name(group) -> str:
    """A group as JSON key text: ``"<label>"`` or ``"<task>:<label>"``."""
    return f"{group[0]}:{group[1]}" if isinstance(group, tuple) else str(group)


def quotas(available: dict, size: int) -> dict:
    """Water-filling of ``size`` slots over the groups of ``available`` (group -> how many samples
    it can hold at most): equal shares up to one, the ``remaining % G`` first groups in sorted
    order taking one more; a group with fewer samples than its share keeps all it has and its
    spare slots are spread equally over the others, again and again until none is short.
    The quotas sum to ``min(size, sum(available))``."""
    out, active, left = {}, sorted(available), size
    while active:
        share, extra = divmod(left, len(active))
        want = {g: share + (i < extra) for i, g in enumerate(active)}
        short = [g for g in active if available[g] < want[g]]
        if not short:
            out.update(want)
            break
        for g in short:
            out[g] = available[g]
            left -= available[g]
        active = [g for g in active if g not in short]
    return out


def memory_plan(table: pd.DataFrame, num_tasks: int, scenario: str, size: int, seed: int) -> list[list[int]]:
    """The memory of each task: element ``t`` (``0 <= t < num_tasks``) is the sorted train ``index``
    values held in memory while task ``t`` is trained (the memory built after tasks ``0..t-1``;
    element 0 is empty); element ``num_tasks`` is the memory after the last task.

    After task ``t``: the groups seen are those of tasks ``0..t``; each gets a quota (``quotas``,
    total ``size``); a group's available samples are those it holds in memory together with task
    ``t``'s train samples of it (an old group has only the former, a new group only the latter);
    a group with more available than its quota keeps a uniformly random subset of that many
    (shrinking an old group drops at random; a new group is sampled at random). The draws use
    ``np.random.default_rng(SeedSequence(seed, spawn_key=(size, t)))``, one permutation per group in
    sorted group order. ``size`` 0 gives empty memories.
    """
    _check(table, num_tasks, scenario)
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 0:
        raise ValueError(f"memory: size must be an int >= 0, got {size!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"memory: seed must be an int >= 0, got {seed!r}")
    index = table["index"].to_numpy().astype(np.int64)
    tasks = table["task"].to_numpy().astype(np.int64)
    groups = _groups(table, scenario)
    held: dict = {}  # group -> sorted index values in memory
    plan: list[list[int]] = [[]]
    for t in range(num_tasks):
        arriving: dict = {}
        for k in np.flatnonzero(tasks == t):
            arriving.setdefault(groups[k], []).append(index[k])
        pool = {g: np.unique(np.concatenate([held.get(g, np.empty(0, np.int64)),
                                             np.asarray(arriving.get(g, []), np.int64)]))
                for g in set(held) | set(arriving)}
        quota = quotas({g: len(v) for g, v in pool.items()}, int(size))
        rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(int(size), t)))
        held = {}
        for g in sorted(pool):
            order = rng.permutation(len(pool[g]))
            held[g] = np.sort(pool[g][order[:quota[g]]])
        plan.append(sorted(int(i) for v in held.values() for i in v))
    return plan


def memory_record(table: pd.DataFrame, plan: Sequence[Sequence[int]], scenario: str) -> dict:
    """A JSON-able audit of ``plan`` (``memory_plan``'s output): for each element ``t``,
    ``{"task": t, "size": n, "keys": [the samples' keys in index order], "per_group": {group name:
    count}}`` (group names: ``group_name``, in sorted group order)."""
    if scenario not in SCENARIOS:
        raise ValueError(f"memory: unknown scenario {scenario!r}; known: {list(SCENARIOS)}")
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"memory: the train table lacks column(s) {missing}; has {list(table.columns)}")
    by_index = {int(i): (str(k), g) for i, k, g in zip(table["index"], table["key"], _groups(table, scenario))}
    records = []
    for t, held in enumerate(plan):
        unknown = [int(i) for i in held if int(i) not in by_index]
        if unknown:
            raise ValueError(f"memory: plan element {t} holds index value(s) {unknown[:5]} not in the train table")
        ordered = sorted(int(i) for i in held)
        counts: dict = {}
        for i in ordered:
            g = by_index[i][1]
            counts[g] = counts.get(g, 0) + 1
        records.append({"task": t, "size": len(ordered), "keys": [by_index[i][0] for i in ordered],
                        "per_group": {group_name(g): counts[g] for g in sorted(counts)}})
    return {"scenario": scenario, "memory": records}
