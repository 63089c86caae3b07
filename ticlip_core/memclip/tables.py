"""memclip tables: one per benchmark, one row per (method, memory size M) with the headline
scores Last, Avg and Forgetting (docs/memclip.md), read from the runs' rows (the one row schema,
``ticlip_core.rows``: study ``memclip``, scenario = the benchmark's name, variant = M) and written
by the reporting layer (``ticlip_core.reporting.tables``)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from numbers import Integral
from pathlib import Path

import pandas as pd

from ticlip_core import rows as row_schema
from ticlip_core.reporting.uncertainty import mean_over_seeds, spread_frame
from ticlip_core.reporting import tables as reporting

STUDY = "memclip"
METHOD_NAMES = {"zero_shot": "Zero-shot", "finetune": "Fine-tune", "joint": "Joint (upper bound)", "gcl": "GCL",
                "gdro": "GDRO", "ewc": "EWC", "icarl": "iCaRL", "der": "DER", "co2l": "Co2L", "foster": "FOSTER",
                "cassle": "CaSSLe"}
#: the memory-independent methods (variant NA), shown once: zero-shot first, joint last
REFERENCES = ("zero_shot", "joint")
#: the final metrics (train_step "final", task "seen") and their columns
METRICS = {"last": "Last", "avg": "Avg", "forgetting": "Forgetting"}
SCENARIO_NAMES = {"class": "class-incremental", "domain": "domain-incremental"}
SCORE_NOTE = (
    "Scores in %. A_t: accuracy after training task t on the pooled test sets of tasks 1..t, each image "
    "classified among all classes seen so far. Last = A_T; Avg = (1/T) sum_t A_t; Forgetting = 1/(T-1) "
    "sum_{j<T} (max_{j<=l<T} A_{l,j} - A_{T,j}), A_{l,j} being the accuracy on task j's test set after task l "
    "(lower is better). Memory: the fixed memory size M (samples in all, an equal number per class seen so far; "
    "per (domain, class) pair in domain-incremental benchmarks); Zero-shot, Joint (upper bound) and any "
    "method without memory (CaSSLe) use none (–). Chosen: the hyperparameters chosen by validation A_T. GCL and "
    "GDRO are reconstructions; the baselines run on the same CLIP image encoder (docs/memclip.md).")


def method_name(method: str) -> str:
    """The display name of ``method`` (``METHOD_NAMES``; an unknown one as it is)."""
    return METHOD_NAMES.get(method, method)


def memory_methods(methods: Sequence[str], memoryless: Sequence[str] = ()) -> list[str]:
    """``methods`` run at every memory size: without the references (``REFERENCES``) and the
    other ``memoryless`` ones, order kept, once each."""
    return [m for m in dict.fromkeys(methods) if m not in REFERENCES and m not in memoryless]


def memoryless_methods(methods: Sequence[str], memoryless: Sequence[str] = ()) -> list[str]:
    """The methods of ``methods`` that run once, without memory, and are not references (CaSSLe):
    shown after the memory methods, their single run beside every memory size."""
    return [m for m in dict.fromkeys(methods) if m in memoryless and m not in REFERENCES]


def check_sizes(memory_sizes: Sequence[int], benchmark: str) -> list[int]:
    """``memory_sizes`` ascending; each an int >= 0, none repeated, at least one."""
    sizes = list(memory_sizes)
    bad = [m for m in sizes if isinstance(m, bool) or not isinstance(m, Integral) or m < 0]
    if bad or not sizes or len(set(sizes)) != len(sizes):
        raise ValueError(f"memclip {benchmark}: memory_sizes must be distinct ints >= 0 (at least one), "
                         f"got {sizes!r}")
    return sorted(int(m) for m in sizes)


def final_scores(rows: pd.DataFrame, benchmark: str, methods: Sequence[str], memory_sizes: Sequence[int],
                 references: Sequence[str] = REFERENCES, memoryless: Sequence[str] = ()) -> pd.DataFrame:
    """The final scores of ``benchmark``: one row per expected (method, memory), columns ``method``,
    ``memory`` (Int64; NA for a method without memory), ``last``, ``avg``, ``forgetting``
    (fractions) and ``chosen`` (the chosen hyperparameters text, "" if none); ordered zero-shot,
    then the memory methods of ``methods`` in that order with M ascending, then the other methods
    of ``methods`` that are in ``memoryless`` (once each), joint last. Every method of ``methods``
    at every size of ``memory_sizes`` (once if memoryless), and every one of ``references``, must
    have all three final metrics: else a ValueError lists what is missing."""
    sizes = check_sizes(memory_sizes, benchmark)
    unknown = [r for r in references if r not in REFERENCES]
    if unknown:
        raise ValueError(f"memclip {benchmark}: references {unknown} are not memory-independent methods "
                         f"{list(REFERENCES)}")
    rows = row_schema.frame(rows)
    final = rows[(rows["study"] == STUDY) & (rows["scenario"] == benchmark)
                 & (rows["train_step"] == row_schema.FINAL_STEP) & (rows["task"] == "seen")]
    expected = ([(m, None) for m in REFERENCES[:1] if m in references]
                + [(m, M) for m in memory_methods(methods, memoryless) for M in sizes]
                + [(m, None) for m in memoryless_methods(methods, memoryless)]
                + [(m, None) for m in REFERENCES[1:] if m in references])
    out, missing = [], []
    for method, M in expected:
        variant = row_schema.NA if M is None else str(M)
        sel = final[(final["method"] == method) & (final["variant"] == variant)]
        scores = dict(zip(sel["metric"], sel["value"]))
        lacking = [k for k in METRICS if k not in scores]
        if lacking:
            missing.append(f"{method} M={variant} ({', '.join(lacking)})")
            continue
        chosen = sel["chosen"].iloc[0]
        out.append({"method": method, "memory": M, **{k: float(scores[k]) for k in METRICS},
                    "chosen": "" if chosen == row_schema.NA else chosen})
    if missing:
        raise ValueError(f"memclip {benchmark}: no final rows (study {STUDY!r}, train_step 'final', task 'seen') "
                         f"for: {'; '.join(missing)}")
    df = pd.DataFrame(out, columns=["method", "memory", *METRICS, "chosen"])
    df["memory"] = pd.array(df["memory"].tolist(), dtype="Int64")
    return df


def benchmark_title(benchmark: str, scenario: str | None = None) -> str:
    """``"<benchmark> (class-incremental)"`` (or domain-incremental); the name alone without a
    scenario."""
    if scenario is None:
        return benchmark
    if scenario not in SCENARIO_NAMES:
        raise ValueError(f"memclip {benchmark}: unknown scenario {scenario!r}; known: {list(SCENARIO_NAMES)}")
    return f"{benchmark} ({SCENARIO_NAMES[scenario]})"


def caption(benchmark: str, scenario: str | None = None) -> str:
    """The caption of ``benchmark``'s table: which benchmark, what the columns mean."""
    return f"memclip, {benchmark_title(benchmark, scenario)}: final scores by method and memory size. {SCORE_NOTE}"


def memclip_table(rows: pd.DataFrame, benchmark: str, methods: Sequence[str], memory_sizes: Sequence[int], *,
                  scenario: str | None = None, references: Sequence[str] = REFERENCES,
                  memoryless: Sequence[str] = ()) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """``benchmark``'s table: ``(raw, shown, caption)``. ``raw`` has one row per (method, memory)
    (``final_scores``'s order) and the columns ``Method`` (display name), ``Memory`` (M; NA for
    zero-shot and joint), ``Last``, ``Avg``, ``Forgetting`` (in %) and ``Chosen``; ``shown`` is it
    as text (scores with 2 decimals, a missing memory as "–")."""
    scores = final_scores(rows, benchmark, methods, memory_sizes, references, memoryless)
    raw = pd.DataFrame({"Method": scores["method"].map(method_name), "Memory": scores["memory"],
                        **{col: 100 * scores[k] for k, col in METRICS.items()}, "Chosen": scores["chosen"]})
    return raw, render_table(raw), caption(benchmark, scenario)


def render_table(raw: pd.DataFrame) -> pd.DataFrame:
    """A memclip table as text: scores with 2 decimals, a missing memory as "–"."""
    formats = {col: reporting.number_formatter("{:.2f}") for col in METRICS.values()}
    formats["Memory"] = reporting.number_formatter("{:.0f}")  # Series.map hands Int64 cells over as floats
    return reporting.render(raw, formats)


def per_benchmark(value, benchmark: str, what: str):
    """``value[benchmark]`` when ``value`` is a mapping (a missing benchmark raises), else ``value``."""
    if isinstance(value, Mapping):
        if benchmark not in value:
            raise ValueError(f"memclip: no {what} given for benchmark {benchmark!r}; have {sorted(value)}")
        return value[benchmark]
    return value


def write_memclip_tables(rows: pd.DataFrame | Sequence[pd.DataFrame], out_dir, benchmarks: Sequence[str] | Mapping[str, str],
                         methods: Sequence[str] | Mapping[str, Sequence[str]],
                         memory_sizes: Sequence[int] | Mapping[str, Sequence[int]], *,
                         references: Sequence[str] = REFERENCES, memoryless: Sequence[str] = ()) -> list[Path]:
    """Write ``<out_dir>/<benchmark>_table.{csv,md,tex,html}`` for each of ``benchmarks`` (names, or
    a mapping name -> scenario "class"/"domain" for the caption) through
    ``reporting.tables.write_table``; ``methods`` and ``memory_sizes`` are one list for all or a
    mapping per benchmark; ``memoryless``: the methods run once, without memory. ``rows``: one
    frame, or one per replicate seed (the tables then show the mean over seeds, with their 95%
    interval). Returns the paths, benchmark by benchmark."""
    seeds = [rows] if isinstance(rows, pd.DataFrame) else list(rows)
    scenarios = benchmarks if isinstance(benchmarks, Mapping) else dict.fromkeys(benchmarks)
    paths = []
    for benchmark, scenario in scenarios.items():
        sizes = per_benchmark(memory_sizes, benchmark, "memory_sizes")
        per_seed = [memclip_table(r, benchmark, per_benchmark(methods, benchmark, "methods"), sizes,
                                  scenario=scenario, references=references, memoryless=memoryless) for r in seeds]
        raw, half = mean_over_seeds([t[0] for t in per_seed], ["Method", "Memory"])
        spread = (half, render_table(spread_frame(raw, half))[list(half.columns)])
        paths += reporting.write_table(raw, Path(out_dir) / f"{benchmark}_table", per_seed[0][2],
                                       shown=render_table(raw), spread=spread, seeds=len(seeds))
    return paths
