"""memclip's reconstructed losses (docs/memclip.md): GCL and GDRO against hand-computed values
on tiny hand-made similarity matrices (expected numbers come from the written formulas, with
math.exp, never from the implementation)."""
from math import exp

import pytest
import torch

from ticlip_core.memclip.losses import GlobalContrastiveLoss, GroupDROLoss


def t(rows):
    return torch.tensor(rows, dtype=torch.float64)


def ids(*values):
    return torch.tensor(values, dtype=torch.int64)


def softmax(xs):
    es = [exp(x) for x in xs]
    return [e / sum(es) for e in es]


# ---------------------------------------------------------------- GCL

# Task-1 batch: samples (train index 5, 1, 3, 0) with labels (0, 0, 2, 1); class 3 is absent, so
# column 3 is never read. tau = 0.5, so an exponent (a - b) / tau is 2 (a - b).
TAU = 0.5
S1 = [[0.5, 0.1, 0.2, 0.9],
      [0.3, -0.2, 0.0, -0.9],
      [0.0, 0.7, 0.4, 0.3],
      [0.2, 0.6, -0.1, 0.0]]
Y1, I1 = ids(0, 0, 2, 1), ids(5, 1, 3, 0)
# g_I(i) = mean_{j: y_j != y_i} exp((S[i][y_j] - S[i][y_i]) / tau)
GI = {5: (exp(2 * (0.2 - 0.5)) + exp(2 * (0.1 - 0.5))) / 2,        # negatives: samples 2 (y=2), 3 (y=1)
      1: (exp(2 * (0.0 - 0.3)) + exp(2 * (-0.2 - 0.3))) / 2,
      3: (2 * exp(2 * (0.0 - 0.4)) + exp(2 * (0.7 - 0.4))) / 3,     # negatives 0, 1 (y=0), 3 (y=1)
      0: (2 * exp(2 * (0.2 - 0.6)) + exp(2 * (-0.1 - 0.6))) / 3}    # negatives 0, 1 (y=0), 2 (y=2)
# g_T(i) = mean_{j: y_j != y_i} exp((S[j][y_i] - S[i][y_i]) / tau); u_T(k) = mean over class k
GT = [(exp(2 * (0.0 - 0.5)) + exp(2 * (0.2 - 0.5))) / 2,
      (exp(2 * (0.0 - 0.3)) + exp(2 * (0.2 - 0.3))) / 2,
      (exp(2 * (0.2 - 0.4)) + exp(2 * (0.0 - 0.4)) + exp(2 * (-0.1 - 0.4))) / 3,
      (exp(2 * (0.1 - 0.6)) + exp(2 * (-0.2 - 0.6)) + exp(2 * (0.7 - 0.6))) / 3]
UT = {0: (GT[0] + GT[1]) / 2, 2: GT[2], 1: GT[3]}

# Task-1 second batch: (index 5 again, index 7 new), labels (0, 1).
S2 = [[0.6, 0.2, 0.0, 0.0],
      [0.1, 0.5, 0.0, 0.0]]
Y2, I2 = ids(0, 1), ids(5, 7)
G2 = {"I5": exp(2 * (0.2 - 0.6)), "T0": exp(2 * (0.1 - 0.6)),
      "I7": exp(2 * (0.1 - 0.5)), "T1": exp(2 * (0.2 - 0.5))}


def gcl(gamma=0.5):
    return GlobalContrastiveLoss(8, 4, tau=TAU, gamma=gamma)


def test_gcl_first_visit_sets_estimators_to_g():
    loss_fn = gcl()
    loss = loss_fn(t(S1), Y1, I1)
    state = loss_fn.state_dict()
    for index, g in GI.items():
        assert state["u_image"][index].item() == pytest.approx(g, rel=1e-12)
    assert state["seen_image"].tolist() == [i in GI for i in range(8)]
    for k, u in UT.items():
        assert state["u_text"][k].item() == pytest.approx(u, rel=1e-12)
    assert state["seen_text"].tolist() == [True, True, True, False]
    # first visit: g_I / u_I = 1 and the class means of g_T / u_T are 1, so the loss is 2 tau
    assert loss.item() == pytest.approx(2 * TAU, rel=1e-12)


def test_gcl_negatives_are_samples_of_other_classes():
    loss_fn = gcl()
    loss_fn(t(S1), Y1, I1)
    state = loss_fn.state_dict()
    # same-class sample 1 counted as a negative of sample 0 would add exp(0) = 1 to the mean
    wrong_same_class = (1 + exp(2 * (0.2 - 0.5)) + exp(2 * (0.1 - 0.5))) / 3
    assert state["u_image"][5].item() != pytest.approx(wrong_same_class, rel=1e-6)
    # class 0 twice among sample 3's negatives counts twice (mean over samples, not classes)
    per_distinct_class = (exp(2 * (0.2 - 0.6)) + exp(2 * (-0.1 - 0.6))) / 2
    assert state["u_image"][0].item() != pytest.approx(per_distinct_class, rel=1e-6)
    assert state["u_image"][0].item() == pytest.approx(GI[0], rel=1e-12)


def test_gcl_second_call_moving_average_and_untouched_entries():
    loss_fn = gcl(gamma=0.5)
    loss_fn(t(S1), Y1, I1)
    loss = loss_fn(t(S2), Y2, I2)
    state = loss_fn.state_dict()
    u5 = (GI[5] + G2["I5"]) / 2                  # (u_old + g_new) / 2
    u7 = G2["I7"]                                # first visit
    ut0 = (UT[0] + G2["T0"]) / 2
    ut1 = (UT[1] + G2["T1"]) / 2
    assert state["u_image"][5].item() == pytest.approx(u5, rel=1e-12)
    assert state["u_image"][7].item() == pytest.approx(u7, rel=1e-12)
    for index in (1, 3, 0):                      # not in the batch: kept
        assert state["u_image"][index].item() == pytest.approx(GI[index], rel=1e-12)
    assert state["u_text"][0].item() == pytest.approx(ut0, rel=1e-12)
    assert state["u_text"][1].item() == pytest.approx(ut1, rel=1e-12)
    assert state["u_text"][2].item() == pytest.approx(UT[2], rel=1e-12)
    expected = TAU / 2 * (G2["I5"] / u5 + G2["T0"] / ut0 + G2["I7"] / u7 + G2["T1"] / ut1)
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    assert loss.item() != pytest.approx(2 * TAU, rel=1e-3)


def test_gcl_estimators_persist_across_tasks():
    loss_fn = gcl()
    loss_fn(t(S1), Y1, I1)
    before = loss_fn.state_dict()
    # "task 2": only classes 2 and 3, new samples 2 and 6
    loss_fn(t([[0.1, 0.2, 0.5, 0.3], [0.0, 0.1, 0.2, 0.6]]), ids(2, 3), ids(2, 6))
    after = loss_fn.state_dict()
    for index in (5, 1, 3, 0):
        assert after["u_image"][index] == before["u_image"][index]
    assert after["u_text"][:2].tolist() == before["u_text"][:2].tolist()
    assert after["seen_text"].tolist() == [True] * 4
    assert after["seen_image"].tolist() == [i in (5, 1, 3, 0, 2, 6) for i in range(8)]
    assert after["u_text"][2] != before["u_text"][2]


def test_gcl_state_round_trip_continues_identically():
    uninterrupted = gcl()
    uninterrupted(t(S1), Y1, I1)
    expected_loss = uninterrupted(t(S2), Y2, I2)

    first = gcl()
    first(t(S1), Y1, I1)
    resumed = gcl()
    resumed.load_state_dict(first.state_dict())
    loss = resumed(t(S2), Y2, I2)
    assert torch.equal(loss, expected_loss)
    for key, value in uninterrupted.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key
        assert resumed.state_dict()[key].device.type == "cpu"


def test_gcl_bad_state_raises():
    state = gcl().state_dict()
    with pytest.raises(ValueError, match="u_image"):
        GlobalContrastiveLoss(9, 4, tau=TAU, gamma=0.5).load_state_dict(state)
    with pytest.raises(ValueError, match="u_text"):
        GlobalContrastiveLoss(8, 5, tau=TAU, gamma=0.5).load_state_dict(state)
    with pytest.raises(ValueError, match="seen_text"):
        gcl().load_state_dict({k: v for k, v in state.items() if k != "seen_text"})


def test_gcl_value_and_gradient_by_hand():
    """3 samples, labels (0, 0, 1), tau = 0.1, first visit (u = g, detached). With
    L = tau/3 sum_i (g_I(i)/u_I(i) + g_T(i)/u_T(y_i)), u_T(0) = (gT0 + gT1)/2, u_T(1) = gT2:
      dL/dS[2,0] = 1/3 (g_I(2)) + 1/3 (gT0 + gT1)/u_T(0) = 1
      dL/dS[2,1] = -1/3 (g_I(2)) - 1/3 (g_T(2)) = -2/3
      dL/dS[0,0] = -1/3 - (1/3) gT0/u_T(0) = -1/3 - (2/3) gT0/(gT0 + gT1)
      dL/dS[0,1] = 1/3 + (1/3) (e0/2)/u_T(1) = 1/3 + (1/3) e0/(e0 + e1)
    with gT_i = exp((S[2,0] - S[i,0])/tau), e_j = exp((S[j,1] - S[2,1])/tau); rows 1 likewise.
    """
    tau = 0.1
    sims = t([[0.5, 0.1], [0.3, -0.2], [0.1, 0.7]]).requires_grad_(True)
    loss = GlobalContrastiveLoss(3, 2, tau=tau, gamma=0.9)(sims, ids(0, 0, 1), ids(0, 1, 2))
    assert loss.item() == pytest.approx(2 * tau, rel=1e-12)
    loss.backward()
    gt0, gt1 = exp((0.1 - 0.5) / tau), exp((0.1 - 0.3) / tau)
    e0, e1 = exp((0.1 - 0.7) / tau), exp((-0.2 - 0.7) / tau)
    expected = [[-1 / 3 - 2 / 3 * gt0 / (gt0 + gt1), 1 / 3 + 1 / 3 * e0 / (e0 + e1)],
                [-1 / 3 - 2 / 3 * gt1 / (gt0 + gt1), 1 / 3 + 1 / 3 * e1 / (e0 + e1)],
                [1.0, -2 / 3]]
    assert torch.allclose(sims.grad, t(expected), rtol=1e-10, atol=1e-12)
    assert sims.grad[2, 0].item() == pytest.approx(1.0, rel=1e-12)
    assert sims.grad[0, 0].item() == pytest.approx(-1 / 3 - 2 / 3 / (1 + exp(2)), rel=1e-12)


def test_gcl_absent_class_columns_are_not_read():
    a, b = gcl(), gcl()
    sims = t(S1).requires_grad_(True)
    loss_a = a(sims, Y1, I1)
    loss_a.backward()
    assert sims.grad[:, 3].tolist() == [0.0] * 4        # class 3 has no sample in the batch
    changed = t(S1)
    changed[:, 3] = torch.tensor([-0.7, 0.8, -0.1, 0.95])
    loss_b = b(changed, Y1, I1)
    assert torch.equal(loss_a.detach(), loss_b)
    assert torch.equal(a.state_dict()["u_image"], b.state_dict()["u_image"])


def test_gcl_single_class_batch_is_zero_and_updates_nothing():
    loss_fn = gcl()
    sims = t([[0.5, 0.1, 0.0, 0.0], [0.2, 0.3, 0.0, 0.0]]).requires_grad_(True)
    loss = loss_fn(sims, ids(1, 1), ids(2, 3))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert sims.grad.abs().sum().item() == 0.0
    assert not loss_fn.state_dict()["seen_image"].any() and not loss_fn.state_dict()["seen_text"].any()


@pytest.mark.parametrize("kwargs, name", [
    (dict(num_samples=0, num_classes=2, tau=0.1, gamma=0.5), "num_samples"),
    (dict(num_samples=4, num_classes=0, tau=0.1, gamma=0.5), "num_classes"),
    (dict(num_samples=4, num_classes=2, tau=0.0, gamma=0.5), "tau"),
    (dict(num_samples=4, num_classes=2, tau=1e-4, gamma=0.5), "tau"),     # exp(2 / tau) overflows
    (dict(num_samples=4, num_classes=2, tau=0.1, gamma=0.0), "gamma"),
    (dict(num_samples=4, num_classes=2, tau=0.1, gamma=1.5), "gamma"),
])
def test_gcl_bad_arguments(kwargs, name):
    n, c = kwargs.pop("num_samples"), kwargs.pop("num_classes")
    with pytest.raises(ValueError, match=name):
        GlobalContrastiveLoss(n, c, **kwargs)


@pytest.mark.parametrize("labels, indices, sims, match", [
    (ids(0, 1), ids(3, 3), [[0.1, 0.2], [0.3, 0.4]], "unique"),
    (ids(0, 2), ids(0, 1), [[0.1, 0.2], [0.3, 0.4]], "labels"),
    (ids(0, 1), ids(0, 4), [[0.1, 0.2], [0.3, 0.4]], "indices"),
    (ids(0, 1), ids(0, 1), [[10.0, 0.2], [0.3, 0.4]], "cosine"),         # logits, not cosines
    (ids(0, 1), ids(0, 1), [[0.1, 0.2, 0.0], [0.3, 0.4, 0.0]], "num_classes"),
])
def test_batch_validation(labels, indices, sims, match):
    for loss_fn in (GlobalContrastiveLoss(4, 2, tau=0.1, gamma=0.5),
                    GroupDROLoss(4, 2, margin=0.5, lam=1.0, lam_in=1.0, gamma=0.5, gamma_v=0.5)):
        with pytest.raises(ValueError, match=match):
            loss_fn(t(sims), labels, indices)


# ---------------------------------------------------------------- GDRO

M = 0.5
# labels (0, 0, 1, 2), train indices 10..13. Squared hinges (m - s_i + s_j)^2 by class column:
#   class 0, positives 0.9 / 0.3 vs negatives 0.2, 0.5:  (0, 0.1^2) and (0.4^2, 0.7^2)
#   class 1, positive 0.8 vs negatives 0.1, 0.6, -0.2:   (0, 0.3^2, 0)
#   class 2, positive 0.4 vs negatives 0.0, 0.3, -0.5:   (0.1^2, 0.4^2, 0)
D1 = [[0.9, 0.1, 0.0],
      [0.3, 0.6, 0.3],
      [0.2, 0.8, -0.5],
      [0.5, -0.2, 0.4]]
DY1, DI1 = ids(0, 0, 1, 2), ids(10, 11, 12, 13)
HINGES = {10: [0.0, 0.01], 11: [0.16, 0.49], 12: [0.0, 0.09, 0.0], 13: [0.01, 0.16, 0.0]}
PLAIN = [(0 + 0.01 + 0.16 + 0.49) / 4, 0.09 / 3, 0.17 / 3]      # L_k, lam_in = inf


def gdro(lam=0.1, lam_in=None, gamma=0.5, gamma_v=0.5, n=16, c=3):
    return GroupDROLoss(n, c, margin=M, lam=lam, lam_in=lam_in, gamma=gamma, gamma_v=gamma_v)


def test_gdro_hinge_terms_and_gradient():
    """Two samples, labels (0, 1): class 0 has s_i - s_j = 0.9 - 0.2 >= m, so a 0 hinge; class 1
    has 0.8 - 0.5 = 0.3 < m, so (0.5 - 0.8 + 0.5)^2 = 0.04. First visit: v = L."""
    sims = t([[0.9, 0.5], [0.2, 0.8]]).requires_grad_(True)
    loss_fn = gdro(lam=0.1, c=2)
    loss = loss_fn(sims, ids(0, 1), ids(0, 1))
    w = softmax([0.0 / 0.1, 0.04 / 0.1])
    assert loss_fn.last_class_weights[0] == pytest.approx(w[0], rel=1e-6)
    assert loss.item() == pytest.approx(w[1] * 0.04, rel=1e-6)
    loss.backward()
    # d/ds of w1 (0.5 - s[1,1] + s[0,1])^2, w detached; the class-0 hinge is flat
    assert sims.grad.tolist()[0][0] == 0.0 and sims.grad.tolist()[1][0] == 0.0
    assert sims.grad[1, 1].item() == pytest.approx(-2 * 0.2 * w[1], rel=1e-6)
    assert sims.grad[0, 1].item() == pytest.approx(2 * 0.2 * w[1], rel=1e-6)


def test_gdro_plain_mean_and_class_weights():
    loss_fn = gdro(lam=0.1, lam_in=None)
    loss = loss_fn(t(D1), DY1, DI1)
    w = softmax([L / 0.1 for L in PLAIN])
    assert sorted(loss_fn.last_class_weights) == [0, 1, 2]
    for k in range(3):
        assert loss_fn.last_class_weights[k] == pytest.approx(w[k], rel=1e-6)
    assert loss.item() == pytest.approx(sum(wk * L for wk, L in zip(w, PLAIN)), rel=1e-6)
    state = loss_fn.state_dict()
    assert state["v_class"].tolist() == pytest.approx(PLAIN, rel=1e-6)
    assert not state["seen_pos"].any()               # lam_in = inf: no inner estimator


def test_gdro_large_lambda_gives_equal_weights():
    loss_fn = gdro(lam=1e6)
    loss = loss_fn(t(D1), DY1, DI1)
    assert list(loss_fn.last_class_weights.values()) == pytest.approx([1 / 3] * 3, rel=1e-5)
    assert loss.item() == pytest.approx(sum(PLAIN) / 3, rel=1e-5)


def inner_first_visit(hinges, lam_in):
    """First visit u_i = mean_j e_ij, so mean_j (e_ij / u_i) l_ij = sum_j e_ij l_ij / sum_j e_ij."""
    e = [exp(h / lam_in) for h in hinges]
    return sum(ei * h for ei, h in zip(e, hinges)) / sum(e), sum(e) / len(e)


def test_gdro_inner_robust_average_first_visit():
    loss_fn = gdro(lam=0.1, lam_in=0.5)
    loss = loss_fn(t(D1), DY1, DI1)
    inner = {i: inner_first_visit(h, 0.5) for i, h in HINGES.items()}
    L = [(inner[10][0] + inner[11][0]) / 2, inner[12][0], inner[13][0]]
    assert L[0] > PLAIN[0]                           # the robust average leans to large hinges
    w = softmax([x / 0.1 for x in L])
    assert loss.item() == pytest.approx(sum(a * b for a, b in zip(w, L)), rel=1e-6)
    state = loss_fn.state_dict()
    for i in HINGES:
        assert state["u_pos"][i].item() == pytest.approx(inner[i][1], rel=1e-6)
    assert state["v_class"].tolist() == pytest.approx(L, rel=1e-6)


def test_gdro_second_call_updates_estimators():
    loss_fn = gdro(lam=0.1, lam_in=0.5, gamma=0.5, gamma_v=0.25)
    loss_fn(t(D1), DY1, DI1)
    first = loss_fn.state_dict()
    # sample 11 (seen) of class 0 against new sample 14 of class 1:
    #   class 0: (0.5 - 0.6 + 0.3)^2 = 0.04;  class 1: (0.5 - 0.8 + 0.5)^2 = 0.04
    loss = loss_fn(t([[0.6, 0.5, 0.0], [0.3, 0.8, 0.0]]), ids(0, 1), ids(11, 14))
    state = loss_fn.state_dict()
    u11 = 0.5 * first["u_pos"][11].item() + 0.5 * exp(0.04 / 0.5)
    assert state["u_pos"][11].item() == pytest.approx(u11, rel=1e-6)
    assert state["u_pos"][14].item() == pytest.approx(exp(0.04 / 0.5), rel=1e-6)
    for i in (10, 12, 13):
        assert state["u_pos"][i] == first["u_pos"][i]
    L0 = exp(0.04 / 0.5) / u11 * 0.04
    L1 = 0.04                                         # one negative, first visit: p = 1
    v0 = 0.75 * first["v_class"][0].item() + 0.25 * L0
    v1 = 0.75 * first["v_class"][1].item() + 0.25 * L1
    assert state["v_class"].tolist()[:2] == pytest.approx([v0, v1], rel=1e-6)
    assert state["v_class"][2] == first["v_class"][2]
    w = softmax([v0 / 0.1, v1 / 0.1])                # softmax over the classes present only
    assert list(loss_fn.last_class_weights) == [0, 1]
    assert loss.item() == pytest.approx(w[0] * L0 + w[1] * L1, rel=1e-6)


def test_gdro_state_round_trip_continues_identically():
    second = (t([[0.6, 0.5, 0.0], [0.3, 0.8, 0.0]]), ids(0, 1), ids(11, 14))
    uninterrupted = gdro(lam_in=0.5)
    uninterrupted(t(D1), DY1, DI1)
    expected = uninterrupted(*second)
    first = gdro(lam_in=0.5)
    first(t(D1), DY1, DI1)
    resumed = gdro(lam_in=0.5)
    resumed.load_state_dict(first.state_dict())
    assert torch.equal(resumed(*second), expected)
    for key, value in uninterrupted.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key
    with pytest.raises(ValueError, match="v_class"):
        gdro(c=4).load_state_dict(first.state_dict())
    with pytest.raises(ValueError, match="u_pos"):
        gdro(n=15).load_state_dict(first.state_dict())
    with pytest.raises(ValueError, match="seen_pos"):
        gdro().load_state_dict({k: v for k, v in first.state_dict().items() if k != "seen_pos"})


def test_gdro_overflow_guard():
    with pytest.raises(ValueError, match="margin=0.5, lam_in=0.05"):   # 2.5^2 / 0.05 = 125 > 80
        gdro(lam_in=0.05)
    gdro(lam_in=0.1)                                                   # 62.5: fine


def test_gdro_single_class_batch_is_zero_with_grad_path():
    loss_fn = gdro(lam_in=0.5)
    loss_fn(t(D1), DY1, DI1)
    before = loss_fn.state_dict()
    sims = t([[0.1, 0.5, 0.0], [0.2, 0.9, 0.3]]).requires_grad_(True)
    loss = loss_fn(sims, ids(1, 1), ids(1, 2))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert sims.grad.abs().sum().item() == 0.0
    assert loss_fn.last_class_weights == {}
    for key, value in loss_fn.state_dict().items():
        assert torch.equal(value, before[key]), key


@pytest.mark.parametrize("kwargs, name", [
    (dict(lam=0.0), "lam"), (dict(lam_in=0.0), "lam_in"), (dict(margin=-0.1), "margin"),
    (dict(gamma=0.0), "gamma"), (dict(gamma_v=1.5), "gamma_v"),
])
def test_gdro_bad_arguments(kwargs, name):
    args = dict(margin=M, lam=0.1, lam_in=None, gamma=0.5, gamma_v=0.5) | kwargs
    with pytest.raises(ValueError, match=name):
        GroupDROLoss(4, 2, **args)
