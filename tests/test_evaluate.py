"""Retrieval and zero-shot formulas on hand-made features with exact expected values."""
import pytest
import torch

from ticlip_core.evaluate import recall_at_k, zero_shot_accuracy


def _pairs():
    # 4 pairs in 2-D. Image i's best text: 0->0, 1->0 (wrong), 2->2, 3->2 (wrong).
    img = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    txt = torch.tensor([[1.0, 0.0], [0.8, 0.2], [0.0, 1.0], [0.2, 0.8]])
    return img, txt


def test_recall_at_1_and_2_exact():
    img, txt = _pairs()
    r = recall_at_k(img, txt, ks=[1, 2], pool_size=4)
    # i2t: image1 scores text0 (0.9) above text1 (0.74); image3 scores text2 (0.9) above text3 (0.74)
    assert r["i2t_R@1"] == pytest.approx(0.5)
    # t2i: text1 scores image1 (0.74) vs image0 (0.8) -> wrong; text3 likewise -> wrong
    assert r["t2i_R@1"] == pytest.approx(0.5)
    assert r["mean_R@1"] == pytest.approx(0.5)
    assert r["i2t_R@2"] == pytest.approx(1.0)
    assert r["t2i_R@2"] == pytest.approx(1.0)


def test_recall_pools_limit_the_candidates():
    img, txt = _pairs()
    # pools {0,1} and {2,3}: same confusions as above, so R@1 stays 0.5, and with pools
    # {0},{1},{2},{3} every query has one candidate: R@1 = 1
    assert recall_at_k(img, txt, ks=[1], pool_size=2)["i2t_R@1"] == pytest.approx(0.5)
    assert recall_at_k(img, txt, ks=[1], pool_size=1)["i2t_R@1"] == pytest.approx(1.0)


def test_ties_do_not_count_as_hits_for_others():
    img = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    txt = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    # identical candidates: nothing scores strictly higher, so each query's partner is rank 0
    assert recall_at_k(img, txt, ks=[1], pool_size=2)["mean_R@1"] == pytest.approx(1.0)


def test_zero_shot_accuracy_any_of_targets():
    feats = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    classifier = torch.tensor([[1.0, 0.0, 0.7], [0.0, 1.0, 0.7]])  # (D, C)
    # logits: s0 -> [1, 0, .7] top1=0; s1 -> [0, 1, .7] top1=1; s2 -> [.6, .8, .98] top1=2
    out = zero_shot_accuracy(feats, classifier, [{0}, {0}, {1, 2}], ks=(1, 2))
    assert out["top1"] == pytest.approx(2 / 3)
    # top2: s1 -> {1, 2}, target {0} -> miss
    assert out["top2"] == pytest.approx(2 / 3)
