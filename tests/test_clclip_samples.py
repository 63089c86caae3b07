"""Per-sample entries behind CL-CLIP's rows (ticlip_core/clclip/scoring.py, ticlip_core/samples.py):
every accuracy, recall and derived row of a chain (per session and ``final``) is the weighted mean
of its entries, two methods are scored on the same sample sets, Bwt's entries are worked out by
hand, and a broken entry is refused. Small: the micro CLIP (random weights, as in the faults
tests) on a hand-made task of random crops, no training."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from ticlip_core import samples
from ticlip_core.clclip.classes import ClassPlan
from ticlip_core.clclip.scoring import (chain_entries, chain_rows, evaluate_session, retrieval_recalls,
                                        sample_layout)
from ticlip_core.models import create_model
from ticlip_core.rows import KEY

CPU = torch.device("cpu")
PLAN = ClassPlan(update_classes=["cat", "dog", "car", "tree", "boat", "lamp"], sessions=[[0, 1], [2, 3], [4, 5]],
                 zs_test_classes=["bird", "cup", "door"], zs_val_classes=["fish", "shoe", "kite"])
FOLD_SIZE = 4  # 10 retrieval images: round(10 / 4) = 2 folds of 5
SCORED = {"acc", "ut_acc", "zs_acc", "a_acc", "bwt", "TR@1", "TR@5", "IR@1", "IR@5"}


def _task() -> dict:
    g = torch.Generator().manual_seed(0)

    def crops(n):
        return torch.randint(0, 256, (n, 32, 32, 3), dtype=torch.uint8, generator=g)

    update_labels = torch.tensor([0, 0, 0, 1, 2, 2, 3, 3, 3, 3, 4, 5, 5])  # unbalanced classes
    owner = torch.tensor([0, 0, 1, 2, 3, 4, 5, 5, 5, 6, 7, 8, 9])  # several captions for some images
    return {"update_test": (crops(13), update_labels), "update_val": (crops(13), update_labels),
            "zs_test": (crops(6), torch.arange(6) % 3), "zs_val": (crops(6), torch.arange(6) % 3),
            "retrieval": (crops(10), [f"a photo of thing {i}" for i in owner.tolist()], owner)}


def _chain(task, setting: str, seed: int) -> list[dict]:
    """A chain of sessions without training: session s is scored with a micro CLIP of seed ``seed + s``."""
    last = PLAN.num_sessions(setting) - 1
    sessions = []
    for s in range(last + 1):
        model, _, _, tokenizer = create_model("ticlip-vit-micro", None, seed=seed + s)
        scores, outcomes = evaluate_session(model, tokenizer, task, PLAN, setting, s, ["a photo of a {}."], CPU,
                                            retrieval=s == last, fold_size=FOLD_SIZE)
        sessions.append({"session": s, "scores": scores, "outcomes": outcomes})
    return sessions


@pytest.fixture(scope="module")
def chains():
    """(setting, method) -> (rows, entries) of two 'methods' (different weights) in OST and MST."""
    task = _task()
    out = {}
    for setting in ("ost", "mst"):
        layout = sample_layout(task, PLAN, setting, FOLD_SIZE)
        for method, seed in (("a", 0), ("b", 10)):
            sessions = _chain(task, setting, seed)
            rows = pd.DataFrame(chain_rows(sessions, setting=setting, method=method, variant="wm"))
            entries = samples.frame(chain_entries(sessions, layout, setting=setting, method=method, variant="wm"))
            out[setting, method] = rows, entries
    return out


@pytest.mark.parametrize("setting", ["ost", "mst"])
def test_every_scored_row_has_entries_that_give_its_value(chains, setting):
    rows, entries = chains[setting, "a"]
    samples.check_matches(rows, entries)
    scored = rows[rows["metric"].isin(SCORED)].set_index(list(KEY)).index
    assert len(scored) == len(rows)  # a CL-CLIP chain writes only test-sample scores
    assert set(samples.row_values(entries).index) == set(scored)
    final = set(rows.loc[rows["train_step"] == "final", "metric"])
    assert final == {"ut_acc", "zs_acc", "a_acc", "TR@1", "TR@5", "IR@1", "IR@5"} | ({"bwt"} if setting == "mst" else set())
    assert set(entries["sample_set"]) == {f"clclip/{setting}/update_test", "clclip/zs_test", "clclip/retrieval/0",
                                          "clclip/retrieval/1"}
    assert entries.groupby("sample_set")["set_size"].first().to_dict() == {
        f"clclip/{setting}/update_test": 13, "clclip/zs_test": 6, "clclip/retrieval/0": 5, "clclip/retrieval/1": 5}
    assert (entries["weight"] > 0).all()
    # A-Acc: the zero-shot samples carry half of the weight; TR@1: each fold half
    a_acc = entries[(entries["metric"] == "a_acc") & (entries["train_step"] == "final")]
    assert a_acc.loc[a_acc["sample_set"] == "clclip/zs_test", "weight"].sum() == pytest.approx(a_acc["weight"].sum() / 2)
    tr = entries[(entries["metric"] == "TR@1") & (entries["train_step"] == "final")]
    assert tr.groupby("sample_set")["weight"].sum().tolist() == pytest.approx([0.5, 0.5])


def test_two_methods_are_scored_on_the_same_samples(chains):
    for setting in ("ost", "mst"):
        (_, a), (_, b) = chains[setting, "a"], chains[setting, "b"]
        assert len(a) == len(b)
        assert (a["method"] == "a").all() and (b["method"] == "b").all()
        same = ["train_step", "task", "eval_step", "metric", "sample_set", "set_size", "sample", "weight"]
        pd.testing.assert_frame_equal(a[same], b[same])
        assert not np.array_equal(a["outcome"], b["outcome"])  # different models, different outcomes


def test_retrieval_entries_are_each_querys_credit_within_its_fold():
    """A fold average with equal weights: TR per image, IR per caption entered on its image."""
    images, texts = torch.eye(4), torch.eye(4)[[0, 1, 3, 2]]  # fold {2, 3}: captions swapped
    owner = torch.arange(4)
    from ticlip_core.clclip.scoring import query_credits

    credits = query_credits(images, texts, owner, (1,), fold_size=2)
    assert credits == {"TR@1": [1.0, 1.0, 0.0, 0.0], "IR@1": [1.0, 1.0, 0.0, 0.0]}


def test_retrieval_recalls_are_the_fold_means_of_the_query_credits():
    task = _task()
    model, _, _, tokenizer = create_model("ticlip-vit-micro", None, seed=3)
    per_query = {}
    images, captions, owner = task["retrieval"]
    scores = retrieval_recalls(model, tokenizer, images, captions, owner, CPU, FOLD_SIZE, per_query=per_query)
    assert set(per_query) == set(scores) and len(per_query["TR@1"]) == 10 and len(per_query["IR@1"]) == 13
    folds = [range(0, 5), range(5, 10)]
    tr = np.mean([np.mean([per_query["TR@5"][i] for i in f]) for f in folds])
    ir = np.mean([np.mean([c for c, o in zip(per_query["IR@1"], owner.tolist()) if o in f]) for f in folds])
    assert scores["TR@5"] == pytest.approx(tr, abs=1e-12) and scores["IR@1"] == pytest.approx(ir, abs=1e-12)


def _hand_session(session: int, update: list[float], zs: list[float], acc: list[float]) -> dict:
    ut = float(np.mean(acc[:session + 1]))
    zs_acc = float(np.mean(zs))
    scores = {"acc_s0": acc[0], "acc_s1": acc[1], "ut_acc": ut, "zs_acc": zs_acc, "a_acc": (ut + zs_acc) / 2}
    return {"session": session, "scores": {"test": scores}, "outcomes": {"update": update, "zs": zs}}


def test_bwt_entries_by_hand():
    """Two MST sessions of classes {0, 1} and {2, 3}; labels 0 0 1 2 3 3.
    After session 0: class 0 half right, class 1 right -> A[0][0] = (0.5 + 1) / 2 = 0.75.
    After session 1: class 0 wrong, class 1 right -> A[1][0] = (0 + 1) / 2 = 0.5; Bwt = -0.25.
    Bwt's entries: session 0's samples 0, 1, 2 weighted 1/4, 1/4, 1/2 (class-balanced), each the
    difference of the last and the first model's outcome: -1, 0, 0."""
    layout = {"setting": "mst", "labels": np.array([0, 0, 1, 2, 3, 3]), "sessions": [[0, 1], [2, 3]], "zs_size": 2,
              "folds": [], "caption_image": np.array([], dtype=int)}
    sessions = [_hand_session(0, [1, 0, 1, 0, 0, 1], [1, 0], [0.75, 0.25]),
                _hand_session(1, [0, 0, 1, 1, 1, 0], [1, 1], [0.5, 0.75])]
    rows = pd.DataFrame(chain_rows(sessions, setting="mst", method="m"))
    entries = samples.frame(chain_entries(sessions, layout, setting="mst", method="m"))
    samples.check_matches(rows, entries)
    bwt = entries[entries["metric"] == "bwt"]
    assert rows.loc[rows["metric"] == "bwt", "value"].item() == pytest.approx(-0.25)
    assert list(bwt["sample_set"]) == ["clclip/mst/update_test"] * 3 and set(bwt["set_size"]) == {6}
    assert list(bwt["sample"]) == [0, 1, 2]
    assert list(bwt["weight"]) == pytest.approx([0.25, 0.25, 0.5])
    assert list(bwt["outcome"]) == [-1.0, 0.0, 0.0]
    # final UT-Acc: each session's part counts 1/S = 1/2 (A[1] = 0.5, 0.75 -> 0.625), over all 6 samples
    ut = entries[(entries["metric"] == "ut_acc") & (entries["train_step"] == "final")]
    assert list(ut["sample"]) == [0, 1, 2, 3, 4, 5]
    assert list(ut["weight"]) == pytest.approx([1 / 8, 1 / 8, 1 / 4, 1 / 4, 1 / 8, 1 / 8])
    assert samples.row_values(ut).item() == pytest.approx(0.625)
    # A-Acc = (UT-Acc + ZS-Acc) / 2: the two zero-shot samples carry half of the weight
    a_acc = entries[(entries["metric"] == "a_acc") & (entries["train_step"] == "final")]
    assert a_acc.loc[a_acc["sample_set"] == "clclip/zs_test", "weight"].sum() == pytest.approx(0.5)
    assert samples.row_values(a_acc).item() == pytest.approx((0.625 + 1.0) / 2)


def test_a_broken_entry_is_refused_naming_the_row(chains):
    rows, entries = chains["mst", "a"]
    broken = entries.copy()
    at = broken.index[(broken["metric"] == "bwt")][0]
    broken.loc[at, "outcome"] += 0.5
    with pytest.raises(ValueError, match="differ from their entries' weighted mean.*bwt"):
        samples.check_matches(rows, broken)
    stray = entries[entries["metric"] == "zs_acc"].assign(method="nobody")
    with pytest.raises(ValueError, match="rows that do not exist"):
        samples.check_matches(rows, pd.concat([entries, stray]))
