"""Claims as data: verdicts from cells and their paired draws (ticlip_core/reporting/findings.py), and
every claim of the three studies on hand-made tables (ticlip_core/<study>/claims.py)."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from ticlip_core.clclip import claims as clclip_claims
from ticlip_core.memclip import claims as memclip_claims
from ticlip_core.reporting import findings as F
from ticlip_core.tic import claims as tic_claims

ROOT = Path(__file__).resolve().parents[1]


def cells_and_draws(values: dict, noise: float = 0.0, seeds=(0,), draws: int = 100):
    """Cells ``(table, row, column) -> value`` in every seed, and draws around them (``noise``: sd)."""
    rng = np.random.default_rng(0)
    cells, out = [], []
    for seed in seeds:
        for (table, row, column), v in values.items():
            cells.append({"table": table, "row": row, "column": column, "seed": seed, "value": v})
            for d, x in enumerate(v + noise * rng.standard_normal(draws)):
                out.append({"table": table, "row": row, "column": column, "seed": seed, "draw": d, "value": x})
    return pd.DataFrame(cells), pd.DataFrame(out)


def cell(row, column="Acc", table="t"):
    return F.Cell(table, {"Method": row}, column)


@pytest.mark.parametrize("op,margin,lo,hi,verdict", [
    (">", 0, 0.1, 0.5, F.HOLDS), (">", 0, -0.5, -0.1, F.CONTRADICTED), (">", 0, -0.1, 0.3, F.INCONCLUSIVE),
    (">", 0, 0.0, 0.0, F.CONTRADICTED), (">", 1, 0.5, 2.0, F.INCONCLUSIVE),
    (">=", 1, -0.5, 2.0, F.HOLDS), (">=", 1, -3, -1.5, F.CONTRADICTED), (">=", 1, -2, 0.5, F.INCONCLUSIVE),
    ("~", 1, -0.5, 0.8, F.HOLDS), ("~", 1, 1.5, 3, F.CONTRADICTED), ("~", 1, 0.5, 1.5, F.INCONCLUSIVE),
])
def test_a_comparison_is_judged_by_where_its_interval_lies(op, margin, lo, hi, verdict):
    assert F.judge(op, margin, lo, hi) == verdict


def test_float_noise_at_the_margin_does_not_decide_a_verdict():
    # a bound that sums of float32 scores leave a hair off the margin is on it
    assert F.judge(">", 0, -3.55e-16, 0.05) == F.INCONCLUSIVE
    assert F.judge(">", 0, 1e-12, 0.05) == F.INCONCLUSIVE
    assert F.judge(">", 0, -0.2, 1e-12) == F.CONTRADICTED
    assert F.judge(">=", 0.01, -0.01 - 1e-12, 0.03) == F.HOLDS
    assert F.judge("~", 0.01, -0.01 - 1e-12, 0.01 + 1e-12) == F.HOLDS


def test_evidence_shows_each_comparison_on_its_own_scale():
    claim = F.Claim("toy", "cheap", "A near B, at less compute",
                    [F.Comparison(cell("a"), ">=", cell("b"), 0.02),
                     F.Comparison(cell("b", "GMACs"), ">", cell("a", "GMACs"), scale=1)], scale=100)
    got = F.evaluate_claims([claim], *cells_and_draws({("t", "Method=a", "Acc"): 0.305, ("t", "Method=b", "Acc"): 0.3,
                                                       ("t", "Method=a", "GMACs"): 267.0,
                                                       ("t", "Method=b", "GMACs"): 588.0}))
    text = F.evidence(got)
    assert "a: Acc 30.5 vs b: Acc 30.0: difference 0.5 [0.5, 0.5], needs >= -2.0 (holds)" in text
    assert "b: GMACs 588.0 vs a: GMACs 267.0: difference 321.0" in text


def test_a_claim_gets_each_verdict_from_hand_made_tables():
    claim = F.Claim("toy", "a_best", "A above B and C", [F.Comparison(cell("a"), ">", cell(F.ANY))])
    v = lambda vals, noise=0.0, seeds=(0,): F.evaluate_claims([claim], *cells_and_draws(vals, noise, seeds))  # noqa: E731
    table = {("t", "Method=a", "Acc"): 0.8, ("t", "Method=b", "Acc"): 0.5, ("t", "Method=c", "Acc"): 0.6}
    held = v(table)
    assert set(held["claim_verdict"]) == {F.HOLDS} and len(held) == 2  # "*": every other row
    assert held["difference"].tolist() == pytest.approx([0.3, 0.2])
    assert set(v({**table, ("t", "Method=c", "Acc"): 0.9})["claim_verdict"]) == {F.CONTRADICTED}
    assert set(v(table, noise=0.3)["claim_verdict"]) == {F.INCONCLUSIVE}
    missing = v({k: x for k, x in table.items() if k[1] != "Method=a"})
    assert missing["claim_verdict"].tolist() == [F.NOT_EVALUATED] and "no row(s) for a" in missing["reason"][0]


def test_seeds_widen_a_difference_interval_beyond_the_bootstrap():
    claim = F.Claim("toy", "ab", "A above B", [F.Comparison(cell("a"), ">", cell("b"))])
    cells, draws = cells_and_draws({("t", "Method=a", "Acc"): 0.6, ("t", "Method=b", "Acc"): 0.5}, seeds=(0, 1, 2))
    assert F.evaluate_claims([claim], cells, draws)["claim_verdict"][0] == F.HOLDS
    # the seeds disagree: a is far above b in one seed and below it in the others
    cells.loc[(cells["row"] == "Method=a"), "value"] = [0.9, 0.45, 0.45]
    line = F.evaluate_claims([claim], cells, draws).iloc[0]
    assert line["boot_lo"] == pytest.approx(0.1) and line["seed_lo"] < 0
    assert line["lo"] == line["seed_lo"] and line["claim_verdict"] == F.INCONCLUSIVE




def all_claims():
    from snakemake.utils import validate

    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    validate(config, str(ROOT / "ticlip_core/schemas/config.schema.yaml"))
    from ticlip_core.memclip.methods import get_method

    benches = config["memclip"]["benchmarks"]
    methods = {b: [m for m in config["memclip"]["methods"] if get_method(m).supports(blk["scenario"])]
               for b, blk in benches.items()}
    memoryless = [m for m in config["memclip"]["methods"] if not get_method(m).uses_memory]
    return (tic_claims.claims(config) + clclip_claims.claims(config)
            + memclip_claims.claims(config, methods, memoryless))


def ranked_cells(claim: F.Claim, sign: float) -> dict:
    """Values for every cell ``claim`` reads such that each comparison's left is 10 points above its
    right per level (``sign`` -1: below): cells ranked by their longest chain of "left above right"."""
    edges = [(c.left, c.right) for c in claim.comparisons]
    key = lambda c: (c.table, ";".join(f"{k}={v}" for k, v in c.row.items()), c.column)  # noqa: E731
    depth = {key(c): 0 for pair in edges for c in pair}
    for _ in range(len(depth)):
        for left, right in edges:
            depth[key(left)] = max(depth[key(left)], depth[key(right)] + 1)
    return {k: 50 + sign * 10 * d for k, d in depth.items()}


def test_every_claim_of_the_three_studies_gets_each_verdict_on_hand_made_tables():
    claims = all_claims()
    assert {c.study for c in claims} == {"tic", "clclip", "memclip"} and len(claims) >= 13
    for claim in claims:
        assert claim.comparisons, claim.id
        for sign, noise, verdict in ((1, 0.0, F.HOLDS), (-1, 0.0, F.CONTRADICTED), (1, 40.0, F.INCONCLUSIVE)):
            got = F.evaluate_claims([claim], *cells_and_draws(ranked_cells(claim, sign), noise))
            assert set(got["claim_verdict"]) == {verdict}, (claim.id, verdict, got["verdict"].tolist())


def test_a_claim_on_a_table_turned_off_is_not_evaluated_and_the_report_says_so(tmp_path):
    claims = all_claims()
    tic = [c for c in claims if c.study == "tic"]
    sequential = next(c for c in tic if c.id == "sequential_forgets_most")
    cells, draws = cells_and_draws(ranked_cells(sequential, 1))  # Table 2's cells only: no LR ablation
    results = pd.concat([F.evaluate_claims(tic, cells, draws),
                         F.not_evaluated([c for c in claims if c.study == "memclip"], "memclip.enabled: false")])
    verdicts = results.groupby("claim")["claim_verdict"].first()
    assert verdicts["no_warmup_constant_lr"] == F.NOT_EVALUATED
    assert verdicts["sequential_forgets_most"] == F.HOLDS
    paths = F.write_findings(results, tmp_path / "findings", F.method_note(200, 0, 0.95, [0]))
    md = paths[1].read_text()
    assert "not evaluated: tic.lr_ablation has no row(s)" in md and "memclip.enabled: false" in md
    assert pd.read_csv(paths[0])["claim"].nunique() == len(tic) + 4
