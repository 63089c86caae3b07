"""TiC-CLIP's findings (Garg et al.) as checks over Table 2 and the LR ablation (``reporting.findings``).

Cells are fractions; margins are in the same units (0.01 = one point)."""
from __future__ import annotations

from ticlip_core.reporting.findings import Cell, Claim, Comparison
from ticlip_core.tic.runs import ablation_runs

TABLE2, ABLATION = "tic.table2", "tic.lr_ablation"
#: the scores every claim about "as good as" reads: the static average and the dynamic in-domain scores
SCORES = ("Static avg", "Retrieval ID", "Classification ID")
REPLAY = ("oracle", "cumulative_all", "cumulative_exp", "cumulative_equal")


def _cell(table: str, method: str, column: str) -> Cell:
    return Cell(table, {"Method": method}, column)


def claims(config: dict) -> list[Claim]:
    """The TiC-CLIP claims for ``config``'s tables (the LR ablation's base run names its rows)."""
    t2 = lambda m, c: _cell(TABLE2, m, c)  # noqa: E731
    out = [
        Claim("tic", "cumulative_all_near_oracle",
              "Cumulative-All comes close to Oracle (within 2 points) at a fraction of its compute",
              [Comparison(t2("cumulative_all", c), ">=", t2("oracle", c), 0.02) for c in SCORES]
              + [Comparison(t2("oracle", "Compute (GMACs)"), ">", t2("cumulative_all", "Compute (GMACs)"), scale=1)],
              scale=100, note="compute is exact (no interval); scores within 2 points or better"),
        Claim("tic", "sequential_forgets_most",
              "Sequential loses most on old steps: its backward transfer is below every replaying method's",
              [Comparison(t2(m, c), ">", t2("sequential", c)) for m in REPLAY
               for c in ("Retrieval backward", "Classification backward")], scale=100),
        Claim("tic", "equal_at_least_exp",
              "Cumulative-Equal is at least as good as Cumulative-Exp (within 1 point)",
              [Comparison(t2("cumulative_equal", c), ">=", t2("cumulative_exp", c), 0.01)
               for c in (*SCORES, "Retrieval backward")], scale=100),
    ]
    runs = ablation_runs(config)
    if runs:
        base, comps = runs[0].name, []
        for variant in runs[1:]:
            switch, value = next(iter(variant.train.items()))
            # the paper's preferred setting: no warm-up on later steps, a constant maximum LR
            variant_worse = value is True if switch == "warmup_later_steps" else value == "cosine"
            better, worse = (base, variant.name) if variant_worse else (variant.name, base)
            comps += [Comparison(_cell(ABLATION, better, c), ">", _cell(ABLATION, worse, c))
                      for c in ("Retrieval ID", "Classification ID")]
        out.append(Claim(
            "tic", "no_warmup_constant_lr",
            "No warm-up after the first step and a constant maximum LR do better on later steps "
            "(in-domain scores of the preferred setting above the flipped switch's)", comps, scale=100))
    return out


def labels(names) -> dict[str, list[str]]:
    """The columns that name a row of each table (for ``uncertainty.table_cells``)."""
    return {name: ["Method"] for name in names}


def paper_tables(parts: dict, compute, params: dict) -> dict:
    """Table 2 (and the LR ablation when it runs) from one seed's rows (``parts["evals"]``) and compute
    records, named as the claims name them."""
    from ticlip_core.tic.tables import lr_ablation_table, tic_table

    rows, chance = parts["evals"], params["chance"]
    out = {TABLE2: tic_table(rows, compute, params["steps"], params["methods"], study="tic", **chance)}
    if params["ablation"]:
        out[ABLATION] = lr_ablation_table(rows, compute, params["steps"], params["ablation"], params["settings"],
                                          study="tic", **chance)
    return out
