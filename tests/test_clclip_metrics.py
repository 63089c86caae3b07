"""CL-CLIP metrics (ticlip_core/metrics.py) and CL-CLIP's Recall@k settings of the shared entry
(ticlip_core/evaluation.py: folds, equal weights, TR/IR names) on hand-made accuracy tables and
features, with values worked out by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ticlip_core.evaluation import recall_at_k as shared_recall_at_k
from ticlip_core.metrics import (a_acc, accuracy_matrix, bwt, class_accuracies, session_accuracies, ut_acc_mst,
                                 ut_acc_ost)
from ticlip_core.tic.evaluate import recall_at_k as paired_recall_at_k
from ticlip_core.retrieval import NonFiniteFeaturesError


def recall_at_k(image_features, text_features, image_of_text, ks=(1, 5), chunk=1024):
    """CL-CLIP's recall on the whole set: TR@k / IR@k."""
    return shared_recall_at_k(image_features, text_features, image_of_text, ks, naming="clclip", chunk=chunk)


def recall_folds(image_features, text_features, image_of_text, ks=(1, 5), fold_size=1000):
    """CL-CLIP's recall over folds of ``fold_size`` images, averaged with equal weights (COCO 5k: 5 x 1k)."""
    return shared_recall_at_k(image_features, text_features, image_of_text, ks, pool_size=fold_size,
                              weighting="equal", naming="clclip")

NAN = float("nan")
# A[i][j]: accuracy on session j's classes after training session i.
A3 = [[0.9, NAN, NAN],
      [0.6, 0.8, NAN],
      [0.5, 0.7, 0.9]]


def test_ut_acc_and_bwt_on_a_3x3_table():
    # UT-Acc (MST) = mean of the last row = (0.5 + 0.7 + 0.9) / 3 = 0.7
    assert ut_acc_mst(A3) == pytest.approx(0.7)
    # Bwt = 1/(S-1) sum_{i<S-1} (A[S-1][i] - A[i][i]) = ((0.5 - 0.9) + (0.7 - 0.8)) / 2 = -0.25
    assert bwt(A3) == pytest.approx(-0.25)
    # not the authors' code's division by S: -0.5 / 3
    assert bwt(A3) != pytest.approx(-0.5 / 3)
    # A-Acc = (UT + ZS) / 2
    assert a_acc(0.7, 0.4) == pytest.approx(0.55)


def test_bwt_two_sessions_and_no_forgetting():
    assert bwt([[0.8, NAN], [0.5, 0.9]]) == pytest.approx(-0.3)
    assert bwt(np.full((4, 4), 0.5)) == 0.0                       # nothing forgotten
    assert bwt([[0.2, NAN], [0.6, 0.9]]) == pytest.approx(0.4)     # positive backward transfer


def test_accuracy_matrix_from_ragged_rows():
    A = accuracy_matrix([[0.9], [0.6, 0.8], [0.5, 0.7, 0.9]])
    assert A.shape == (3, 3)
    assert np.isnan(A[0, 1]) and np.isnan(A[0, 2]) and np.isnan(A[1, 2])
    assert np.array_equal(np.tril(A), np.tril(np.nan_to_num(np.array(A3))))
    full = accuracy_matrix([[0.9, 0.1, 0.1], [0.6, 0.8, 0.2], [0.5, 0.7, 0.9]])  # upper entries kept
    assert full[0, 2] == 0.1 and ut_acc_mst(full) == pytest.approx(0.7)


def test_matrix_errors():
    with pytest.raises(ValueError, match="at least 2 sessions"):
        bwt([[0.7]])
    assert ut_acc_mst([[0.7]]) == pytest.approx(0.7)
    with pytest.raises(ValueError, match="finite"):
        bwt([[0.9, NAN], [NAN, 0.8]])
    with pytest.raises(ValueError, match="square"):
        ut_acc_mst(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="row 1 has 1 entries"):
        accuracy_matrix([[0.9], [0.6]])
    with pytest.raises(ValueError, match="no sessions"):
        accuracy_matrix([])


def test_session_accuracies_and_ost_accuracy():
    labels = [0, 0, 1, 2, 2, 2]
    correct = [True, False, True, True, True, False]
    # per class: 0 -> 1/2, 1 -> 1/1, 2 -> 2/3, 3 -> no samples
    assert class_accuracies(correct, labels, 4)[:3] == pytest.approx([0.5, 1.0, 2 / 3])
    assert math.isnan(class_accuracies(correct, labels, 4)[3])
    # session {0}: 1/2; session {1, 2}: the mean of its classes' accuracies (1 + 2/3) / 2 = 5/6 (the
    # authors' get_acc_bwt), not the 3/4 of its 4 samples; session {3}: no samples
    row = session_accuracies(correct, labels, [[0], [1, 2], [3]])
    assert row[:2] == pytest.approx([0.5, 5 / 6]) and math.isnan(row[2])
    assert session_accuracies(correct, labels, [[1, 3]]) == pytest.approx([1.0])  # a class without samples is left out
    assert ut_acc_ost(correct) == pytest.approx(4 / 6)
    assert ut_acc_ost(torch.tensor([True, True])) == 1.0
    with pytest.raises(ValueError, match="no test samples"):
        ut_acc_ost([])
    with pytest.raises(ValueError, match="3 correctness flags for 2 labels"):
        session_accuracies([1, 0, 1], [0, 1], [[0]])
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        class_accuracies([1, 0], [0, 2], 2)


def test_recall_identity_features_are_perfect():
    feats = torch.eye(5)
    r = recall_at_k(feats, feats, torch.arange(5), ks=(1, 5))
    assert r == {"TR@1": 1.0, "TR@5": 1.0, "IR@1": 1.0, "IR@5": 1.0}


def test_recall_with_a_swapped_pair():
    images = torch.eye(4)
    texts = torch.eye(4)[[1, 0, 2, 3]]  # captions 0 and 1 describe each other's image
    r = recall_at_k(images, texts, torch.arange(4), ks=(1, 2))
    # images 0 and 1: the other's caption scores 1, their own 0, tied with two more captions
    # at 0 -> found at 1 never, at 2 with probability 1/3 (random order of the 3 tied); images
    # 2 and 3 always. The same for the captions (IR). (The old rule, counting only strictly
    # higher candidates, gave R@2 = 1.)
    assert r == pytest.approx({"TR@1": 0.5, "TR@2": (2 / 3 + 2) / 4, "IR@1": 0.5, "IR@2": (2 / 3 + 2) / 4})


def test_recall_with_several_captions_per_image():
    images = torch.eye(3)
    texts = torch.eye(3)[[1, 0, 1, 2]]
    owner = torch.tensor([0, 0, 1, 2])
    r = recall_at_k(images, texts, owner, ks=(1, 2))
    # TR: image 0's caption 1 scores 1, alone -> found at 1; image 1's caption 2 scores 1, tied
    # with caption 0 (image 0's) -> 1/2 at 1, sure at 2; image 2 found at 1
    # IR: text 0 (owner 0) scores 1 with image 1 and 0 with images 0 and 2 -> 0 at 1, 1/2 at 2
    assert r == pytest.approx({"TR@1": 2.5 / 3, "TR@2": 1.0, "IR@1": 0.75, "IR@2": 3.5 / 4})


def test_constant_features_score_chance():
    feats = torch.nn.functional.normalize(torch.ones(6, 4), dim=-1)
    r = recall_at_k(feats, feats, torch.arange(6), ks=(1, 2, 6))
    assert r == pytest.approx({"TR@1": 1 / 6, "TR@2": 2 / 6, "TR@6": 1.0, "IR@1": 1 / 6, "IR@2": 2 / 6,
                               "IR@6": 1.0}, abs=1e-12)
    # two captions per image, 6 images in folds of 3: TR at 1 = P(a tied draw of 6 captions
    # starts with one of the image's 2) = 1/3; IR is one image among 3: 1/3
    owner = torch.arange(6).repeat_interleave(2)
    r = recall_folds(feats, torch.cat([feats, feats]), owner, ks=(1, 2), fold_size=3)
    assert r == pytest.approx({"TR@1": 2 / 6, "TR@2": 1 - (4 / 6) * (3 / 5), "IR@1": 1 / 3, "IR@2": 2 / 3},
                              abs=1e-12)


def test_non_finite_features_are_refused():
    feats = torch.eye(3)
    feats[1, 1] = float("nan")
    with pytest.raises(NonFiniteFeaturesError, match=r"image features hold 1 non-finite value\(s\).*\[1\]"):
        recall_at_k(feats, torch.eye(3), torch.arange(3))
    with pytest.raises(NonFiniteFeaturesError, match="text features"):
        recall_folds(torch.eye(3), feats, torch.arange(3), fold_size=1)
    with pytest.raises(ValueError, match=r"credits in \[0, 1\]"):
        ut_acc_ost([0.5, float("nan")])


def test_accuracies_take_fractional_credits():
    # a tie among 4 classes gives 1/4 credit (scoring.class_accuracy via retrieval.topk_credit)
    credit = torch.tensor([1.0, 0.25, 0.25, 0.0])
    row = session_accuracies(credit, [0, 0, 1, 1], [[0], [1]])
    assert row == pytest.approx([0.625, 0.125])  # bool() would have made 0.25 a full hit
    assert ut_acc_ost(credit) == pytest.approx(1.5 / 4)


def test_recall_matches_the_paired_evaluator_and_is_chunk_independent():
    g = torch.Generator().manual_seed(0)
    img = torch.nn.functional.normalize(torch.randn(50, 8, generator=g), dim=-1)
    txt = torch.nn.functional.normalize(img + 0.8 * torch.randn(50, 8, generator=g), dim=-1)
    ours = recall_at_k(img, txt, torch.arange(50), ks=(1, 5))
    theirs = paired_recall_at_k(img, txt, [1, 5], pool_size=50)
    assert ours["TR@1"] == pytest.approx(theirs["i2t_R@1"]) and ours["IR@5"] == pytest.approx(theirs["t2i_R@5"])
    assert 0 < ours["TR@1"] < 1
    assert recall_at_k(img, txt, torch.arange(50), ks=(1, 5), chunk=7) == ours
    owner = torch.arange(50).repeat_interleave(2)  # two captions each, one the exact image
    both = torch.stack([txt, img], dim=1).reshape(100, 8)
    assert recall_at_k(img, both, owner, ks=(1,), chunk=9) == recall_at_k(img, both, owner, ks=(1,))


def test_recall_folds():
    images = torch.eye(4)
    texts = torch.eye(4)[[0, 1, 3, 2]]  # captions 2 and 3 swapped
    # fold {0, 1}: perfect; fold {2, 3}: both wrong at 1 -> mean TR@1 = IR@1 = 0.5
    r = recall_folds(images, texts, torch.arange(4), ks=(1,), fold_size=2)
    assert r == {"TR@1": 0.5, "IR@1": 0.5}
    # one image per fold: trivially perfect; fold_size >= N: one fold, the whole set
    assert recall_folds(images, texts, torch.arange(4), ks=(1,), fold_size=1) == {"TR@1": 1.0, "IR@1": 1.0}
    assert recall_folds(images, texts, torch.arange(4), ks=(1,), fold_size=1000) == \
        recall_at_k(images, texts, torch.arange(4), ks=(1,))
    # several captions per image: each fold keeps the captions of its own images
    owner = torch.tensor([0, 0, 1, 2, 3])
    texts5 = torch.eye(4)[[0, 1, 1, 3, 2]]
    r = recall_folds(images, texts5, owner, ks=(1,), fold_size=2)
    # fold {0,1}: TR: image 0 found; image 1's caption 2 (= e1) ties with caption 1 (= e1, image
    # 0's) -> 1/2, so 3/4 (the old tie rule gave 1); IR: caption 1 (owner 0, = e1) ranks image 1
    # first -> 2/3. fold {2,3}: 0, 0
    assert r == pytest.approx({"TR@1": (3 / 4 + 0) / 2, "IR@1": (2 / 3 + 0) / 2})


def test_recall_errors():
    with pytest.raises(ValueError, match=r"image\(s\) \[2\] have no caption"):
        recall_at_k(torch.eye(3), torch.eye(3)[:2], [0, 1])
    with pytest.raises(ValueError, match="index the 2 images"):
        recall_at_k(torch.eye(2), torch.eye(2), [0, 2])
    with pytest.raises(ValueError, match="features must be"):
        recall_at_k(torch.eye(2), torch.ones(2, 3), [0, 1])
    with pytest.raises(ValueError, match="fold_size"):
        recall_folds(torch.eye(2), torch.eye(2), [0, 1], fold_size=0)
