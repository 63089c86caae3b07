"""The memory-efficient CL paper's findings (GCL, GDRO) as checks over the memclip tables
(``reporting.findings``). Cells are in %; margins in points."""
from __future__ import annotations

from ticlip_core.memclip.tables import METHOD_NAMES
from ticlip_core.reporting.findings import Cell, Claim, Comparison

OURS = ("gcl", "gdro")


def table(benchmark: str) -> str:
    """The findings' name of ``benchmark``'s table."""
    return f"memclip.{benchmark}"


def _cell(benchmark: str, method: str, memory, column: str = "Last") -> Cell:
    return Cell(table(benchmark), {"Method": METHOD_NAMES[method], "Memory": "-" if memory is None else str(memory)},
                column)


def claims(config: dict, methods: dict[str, list[str]], memoryless: list[str]) -> list[Claim]:
    """The memclip claims for the enabled benchmarks, ``methods`` (per benchmark, those that run there)
    and the ``memoryless`` methods (run once, no memory)."""
    mc = config["memclip"]
    benches = {b: blk for b, blk in mc["benchmarks"].items() if blk["enabled"] and b in methods}
    size = lambda m, M: None if m in memoryless or m in ("zero_shot", "joint") else M  # noqa: E731
    def others(b, M, exclude):
        return [m for m in methods[b] if m not in exclude and m != "joint"]
    large = [Comparison(_cell(b, "gcl", max(blk["memory_sizes"])), ">",
                        _cell(b, m, size(m, max(blk["memory_sizes"]))))
             for b, blk in benches.items() for m in others(b, None, ("gcl",))]
    small = [Comparison(_cell(b, "gdro", min(blk["memory_sizes"])), ">",
                        _cell(b, m, size(m, min(blk["memory_sizes"]))))
             for b, blk in benches.items() for m in others(b, None, ("gdro",))]
    above = [Comparison(_cell(b, ours, M), ">", _cell(b, m, size(m, M)))
             for b, blk in benches.items() for M in blk["memory_sizes"] for ours in OURS
             for m in others(b, M, OURS)]
    domain = [Comparison(_cell(b, "gdro", M), ">", _cell(b, "gcl", M))
              for b, blk in benches.items() if blk["scenario"] == "domain" for M in blk["memory_sizes"]]
    return [
        Claim("memclip", "gcl_best_large_memory", "GCL is best with a large memory: its Last at the largest M is "
              "above every other method's (zero-shot and memoryless methods included)", large),
        Claim("memclip", "gdro_best_small_memory", "GDRO is best with a small memory: its Last at the smallest M is "
              "above every other method's", small),
        Claim("memclip", "above_zero_shot_and_baselines", "GCL and GDRO are above zero-shot and every baseline at "
              "every memory size (Last)", above),
        Claim("memclip", "gdro_above_gcl_domain", "GDRO is above GCL in domain-incremental learning at every memory "
              "size (Last)", domain),
    ]


def labels(names) -> dict[str, list[str]]:
    """The columns that name a row of each table (for ``uncertainty.table_cells``)."""
    return {name: ["Method", "Memory"] for name in names}


def paper_tables(parts: dict, compute, params: dict) -> dict:
    """Each benchmark's table from one seed's rows (``parts["runs"]``), named as the claims name them."""
    from ticlip_core.memclip.tables import memclip_table

    return {table(b): memclip_table(parts["runs"], b, params["methods"][b], params["memory_sizes"][b],
                                    scenario=scenario, memoryless=params["memoryless"])[0]
            for b, scenario in params["benchmarks"].items()}
