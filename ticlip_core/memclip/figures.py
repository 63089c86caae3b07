"""memclip figures from the runs' rows: Last against the memory size M per benchmark (the paper's
Figure 1 analogue) and the curves of A_t over tasks per memory size; deterministic PNGs through
``ticlip_core.reporting.figures``. Metric definitions: ``tables.SCORE_NOTE``, docs/memclip.md."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
from matplotlib.ticker import MaxNLocator

from ticlip_core import rows as row_schema
from ticlip_core.memclip import tables
from ticlip_core.reporting import figures

#: the line of each memory-independent method: zero-shot dotted, joint dashed
REFERENCE_STYLE = {"zero_shot": dict(color="black", ls=":"), "joint": dict(color="dimgrey", ls="--")}
_PALETTE = [f"C{i}" for i in range(10)]


#: beside the panel, so that no line is hidden behind it (a dozen methods fill a panel)
LEGEND = dict(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
#: a method without memory (not a reference) is drawn dash-dotted in its colour
MEMORYLESS_STYLE = dict(ls="-.", lw=1.5)


def _color(method: str, methods: Sequence[str]) -> str:
    """One colour per method, by its place in ``methods`` (every benchmark's, in order): the same
    in every panel and figure."""
    order = tables.memory_methods(methods)
    return _PALETTE[order.index(method) % len(_PALETTE)] if method in order else "grey"


def _all_methods(methods, benchmarks) -> list[str]:
    """Every benchmark's methods in one ordered list (``methods``: a list, or a mapping per benchmark)."""
    if isinstance(methods, Mapping):
        return list(dict.fromkeys(m for b in benchmarks for m in tables.per_benchmark(methods, b, "methods")))
    return list(methods)


def figure1(rows: pd.DataFrame, benchmarks: Sequence[str] | Mapping[str, str],
            methods: Sequence[str] | Mapping[str, Sequence[str]],
            memory_sizes_by_benchmark: Mapping[str, Sequence[int]] | Sequence[int], path, *,
            references: Sequence[str] = tables.REFERENCES, memoryless: Sequence[str] = ()) -> Path:
    """The paper's Figure 1 analogue: one panel per benchmark (``benchmarks``: names, or a mapping
    name -> scenario "class"/"domain" for the panel title); x = the memory sizes M as categorical
    ticks (0 included), y = Last (%), one line with markers per memory method (``methods``: one list,
    or a mapping per benchmark); zero-shot as a dotted and joint (upper bound) as a dashed
    horizontal line, another method without memory (``memoryless``) dash-dotted in its colour.
    Missing scores raise (``tables.final_scores``). A deterministic PNG at ``path``."""
    scenarios = benchmarks if isinstance(benchmarks, Mapping) else dict.fromkeys(benchmarks)
    if not scenarios:
        raise ValueError("figure1: no benchmarks given")
    everyone = _all_methods(methods, scenarios)
    fig, axes = figures.new_figure(6.2 * len(scenarios), 3.8, ncols=len(scenarios))
    for ax, (benchmark, scenario) in zip(axes, scenarios.items()):
        sizes = tables.check_sizes(tables.per_benchmark(memory_sizes_by_benchmark, benchmark, "memory sizes"),
                                   benchmark)
        here = tables.per_benchmark(methods, benchmark, "methods")
        scores = tables.final_scores(rows, benchmark, here, sizes, references, memoryless)
        for method in references:
            last = 100 * scores.loc[scores["method"] == method, "last"].iloc[0]
            ax.axhline(last, lw=1.5, label=tables.method_name(method), **REFERENCE_STYLE[method])
        for method in tables.memoryless_methods(here, memoryless):
            last = 100 * scores.loc[scores["method"] == method, "last"].iloc[0]
            ax.axhline(last, color=_color(method, everyone), label=tables.method_name(method), **MEMORYLESS_STYLE)
        for method in tables.memory_methods(here, memoryless):
            sel = scores[scores["method"] == method]
            x = [sizes.index(int(M)) for M in sel["memory"]]
            ax.plot(x, 100 * sel["last"], marker="o", color=_color(method, everyone), label=tables.method_name(method))
        ax.set_xticks(range(len(sizes)), [str(M) for M in sizes])
        ax.set_xlabel("memory size M (samples)")
        ax.set_ylabel("Last (%)")
        ax.set_title(tables.benchmark_title(benchmark, scenario))
        ax.grid(alpha=0.3)
        ax.legend(**LEGEND)
    return figures.save(fig, path)


def step_accuracy(rows: pd.DataFrame, benchmark: str) -> pd.DataFrame:
    """A_t of every run of ``benchmark``: the rows after each task (train_step ``"0"``, ``"1"``,
    ...; task ``"seen"``, metric ``"acc"``) as columns ``method``, ``variant``, ``task`` (int, 0-based)
    and ``value`` (fraction)."""
    rows = row_schema.frame(rows)
    sel = rows[(rows["study"] == tables.STUDY) & (rows["scenario"] == benchmark)
               & (rows["train_step"] != row_schema.FINAL_STEP) & (rows["task"] == "seen")
               & (rows["metric"] == "acc")]
    return pd.DataFrame({"method": sel["method"], "variant": sel["variant"],
                         "task": sel["train_step"].astype(int), "value": sel["value"]}).sort_values(
        ["method", "variant", "task"], kind="stable")


def accuracy_curves(rows: pd.DataFrame, benchmark: str, methods: Sequence[str], memory_sizes: Sequence[int],
                    path, *, references: Sequence[str] = tables.REFERENCES, scenario: str | None = None,
                    memoryless: Sequence[str] = (), colors_from: Sequence[str] | None = None) -> Path:
    """A_t after each task: one panel per memory size M; x = task (1..T), y = A_t (%), one line per
    memory method at that M, and zero-shot, joint (upper bound) and any other method without
    memory (``memoryless``) in every panel (their curve when the runs wrote rows after each task,
    else their final Last as a horizontal line). T is the number of tasks in ``benchmark``'s rows;
    a memory method lacking a task raises. Colours by place in ``colors_from`` (default
    ``methods``; give every benchmark's methods so that a method has one colour in every figure).
    A deterministic PNG at ``path``."""
    sizes = tables.check_sizes(memory_sizes, benchmark)
    scores = tables.final_scores(rows, benchmark, methods, sizes, references, memoryless)
    colors_from = list(colors_from) if colors_from is not None else list(methods)
    curves = step_accuracy(rows, benchmark)
    if curves.empty:
        raise ValueError(f"accuracy_curves: no rows after a task (task 'seen', metric 'acc') for benchmark "
                         f"{benchmark!r}")
    T = int(curves["task"].max()) + 1
    tasks = list(range(T))

    def curve(method: str, variant: str) -> pd.DataFrame:
        return curves[(curves["method"] == method) & (curves["variant"] == variant)]

    missing = [f"{m} M={M} (tasks {sorted(set(tasks) - set(curve(m, str(M))['task']))})"
               for m in tables.memory_methods(methods, memoryless) for M in sizes
               if sorted(curve(m, str(M))["task"]) != tasks]
    if missing:
        raise ValueError(f"accuracy_curves {benchmark}: A_t missing for {'; '.join(missing)} (T={T})")
    fig, axes = figures.new_figure(4.2 * len(sizes) + 1.6, 3.6, ncols=len(sizes))
    lo, hi = 100.0, 0.0
    for ax, M in zip(axes, sizes):
        for method in [*references, *tables.memoryless_methods(methods, memoryless)]:
            sel = curve(method, row_schema.NA)
            style = dict(lw=1.5, label=tables.method_name(method), **(
                REFERENCE_STYLE[method] if method in references
                else dict(color=_color(method, colors_from), ls=MEMORYLESS_STYLE["ls"])))
            if len(sel):
                ys = list(100 * sel["value"])
                ax.plot(sel["task"] + 1, ys, marker=".", **style)
            else:
                ys = [100 * scores.loc[scores["method"] == method, "last"].iloc[0]]
                style["label"] += " (final)"
                ax.axhline(ys[0], **style)
            lo, hi = min(lo, *ys), max(hi, *ys)
        for method in tables.memory_methods(methods, memoryless):
            sel = curve(method, str(M))
            ys = list(100 * sel["value"])
            ax.plot(sel["task"] + 1, ys, marker="o", color=_color(method, colors_from),
                    label=tables.method_name(method))
            lo, hi = min(lo, *ys), max(hi, *ys)
        ax.set_title(f"{tables.benchmark_title(benchmark, scenario)}, M = {M}")
        ax.set_xlabel("task t")
        ax.set_ylabel("$A_t$ (%)")
        ax.set_xlim(0.7, T + 0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[-1].legend(**LEGEND)  # the same lines in every panel: one legend
    for ax in axes:  # one y range, so panels compare
        ax.set_ylim(max(0.0, lo - 5), min(100.0, hi + 5))
    return figures.save(fig, path)
