"""memclip's iCaRL baseline (ticlip_core/memclip/methods/icarl.py): herding picks, in order, the
samples that keep the running mean closest to the class mean; old classes keep their herding
prefix; the quotas total M; the nearest-mean-of-exemplars classifier normalises features and
means; the distillation term is PyCIL's _KD_loss; the exemplars survive a state round trip."""
import math
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ticlip_core.memclip.methods import get_method
from ticlip_core.losses import kd_loss
from ticlip_core.memclip.methods.icarl import class_mean, herding, nme_scores, update_exemplars


def test_herding_keeps_the_running_mean_closest_to_the_class_mean():
    # points 4, 1, 0, -1 on a line: mean 1. Pick 1 (at the mean); then 0 (running mean 0.5 vs
    # 2.5 with 4, 0 with -1); then 4 (running mean 5/3, vs 0 with -1); then -1. Sorting by the
    # distance to the mean would instead give 1, 0, -1, 4.
    feats = torch.tensor([[4.0], [1.0], [0.0], [-1.0]])
    assert herding(feats, 4) == [1, 2, 0, 3]
    assert herding(feats, 2) == [1, 2]
    assert herding(feats, 0) == []
    # 2-D: the first pick is the point nearest the mean (0, 0)
    square = torch.tensor([[1.0, 1.0], [-1.0, -1.0], [0.1, 0.0], [1.0, -1.0], [-1.0, 1.0]])
    assert herding(square, 1) == [2]
    assert herding(square, 3)[1:] in ([0, 1], [1, 0], [3, 4], [4, 3])  # then an opposite pair
    assert sorted(herding(square, 5)) == [0, 1, 2, 3, 4]  # no sample twice


def test_old_classes_keep_their_herding_prefix_and_the_quotas_total_m():
    rng = torch.Generator().manual_seed(0)
    feats = {r: torch.randn(3, generator=rng) for r in range(100)}
    calls = []

    def features_of(rows):
        calls.append(list(rows))
        return torch.stack([feats[r] for r in rows])

    old = {0: [5, 3, 9, 1], 1: [7, 2, 8]}
    new = {2: [10, 11, 12, 13, 14, 15], 3: [20, 21]}
    # M = 7 over 4 classes: 2, 2, 2, 1 (the remainder to the lowest class ids)
    out = update_exemplars(old, new, 7, features_of)
    assert list(out) == [0, 1, 2, 3]
    assert out[0] == [5, 3] and out[1] == [7, 2]
    assert out[2] == [new[2][i] for i in herding(features_of(new[2]), 2)]
    assert out[3] == [new[3][i] for i in herding(features_of(new[3]), 1)]
    assert sum(map(len, out.values())) == 7
    # M = 12: class 3 has only 2 samples, its spare slot goes to the others (4, 3, 3, 2)
    out = update_exemplars(old, new, 12, features_of)
    assert {c: len(r) for c, r in out.items()} == {0: 4, 1: 3, 2: 3, 3: 2}
    assert out[0] == old[0] and out[1] == old[1] and sum(map(len, out.values())) == 12
    # M = 0: nothing kept, no features computed
    calls.clear()
    assert update_exemplars(old, new, 0, features_of) == {0: [], 1: [], 2: [], 3: []}
    assert calls == []


def test_the_nearest_mean_classifier_normalises_features_and_means():
    # the exemplars' features are normalised before averaging: (2, 0) and (0, 1) -> (1, 1)/sqrt2
    torch.testing.assert_close(class_mean(torch.tensor([[2.0, 0.0], [0.0, 1.0]])),
                               torch.tensor([1.0, 1.0]) / math.sqrt(2))
    means = torch.tensor([[3.0, 0.0], [0.0, 1.0]])
    feats = torch.tensor([[1.0, 2.0], [10.0, 1.0], [0.5, 0.0]])
    scores = nme_scores(feats, means)
    expected = torch.tensor([[1 / math.sqrt(5), 2 / math.sqrt(5)], [10 / math.sqrt(101), 1 / math.sqrt(101)],
                             [1.0, 0.0]])
    torch.testing.assert_close(scores, expected)
    assert scores.argmax(dim=1).tolist() == [1, 0, 0]
    assert (feats @ means.T).argmax(dim=1).tolist() == [0, 0, 0]  # unnormalised means would say 0


def test_the_distillation_term_is_pycils_kd_loss():
    pred = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    soft = torch.tensor([[2.0, 0.0], [4.0, 4.0]])
    # sample 1: -(e/(e+1) * (0.5 - log(e^0.5 + e)) + 1/(e+1) * (1 - log(e^0.5 + e)));
    # sample 2: uniform vs uniform: log 2; divided by the batch size, no T^2
    e, z = math.e, math.log(math.exp(0.5) + math.e)
    first = -(e / (e + 1) * (0.5 - z) + 1 / (e + 1) * (1 - z))
    assert float(kd_loss(pred, soft, 2.0)) == pytest.approx((first + math.log(2)) / 2)


def test_the_scorer_orders_classes_as_seen_and_falls_back_without_exemplars():
    method = get_method("icarl")
    assert method.options == {"T": 2.0} and method.scenarios == ("class",) and method.uses_memory
    model = types.SimpleNamespace(encode_image=lambda x, normalize=True: F.normalize(x, dim=-1))
    method.means = {4: torch.tensor([1.0, 0.0]), 7: torch.tensor([0.0, 1.0])}
    method.exemplars = {4: [3, 1], 7: [8]}
    score = method.scorer(types.SimpleNamespace(model=model, seen_classes=[7, 4]))
    torch.testing.assert_close(score(torch.tensor([[3.0, 4.0]])), torch.tensor([[0.8, 0.6]]))
    # a seen class with no exemplar (M = 0, or M below the classes seen): the label text
    assert method.scorer(types.SimpleNamespace(model=model, seen_classes=[7, 4, 9])) is None
    assert get_method("icarl").scorer(types.SimpleNamespace(model=model, seen_classes=[0])) is None


def test_the_exemplars_and_means_survive_a_state_round_trip_and_are_trained_on():
    method = get_method("icarl")
    method.exemplars = {0: [5, 3], 1: [7], 2: []}
    method.means = {0: torch.tensor([0.6, 0.8]), 1: torch.tensor([1.0, 0.0])}
    resumed = get_method("icarl")
    resumed.load_state_dict(method.state_dict())
    assert resumed.exemplars == method.exemplars and list(resumed.exemplars) == [0, 1, 2]
    assert resumed.means.keys() == method.means.keys()
    for c in method.means:
        torch.testing.assert_close(resumed.means[c], method.means[c])
    task_of_row = np.array([0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1])
    # the task's rows plus its own exemplars, never the shared plan's rows
    assert resumed.training_rows(1, task_of_row, [0, 1, 2]) == [3, 5, 7, 8, 9, 10]
