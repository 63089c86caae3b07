"""Co2L's mechanisms (ticlip_core/memclip/methods/co2l.py, memclip/supcon.py): the asymmetric
SupCon (only current-task samples are anchors) and the instance-wise relation distillation against
values computed by hand from the written formulas (math.exp, never the implementation), and the
method's hooks on a tiny stand-in image tower: no anchors without current-task samples, heads
rebuilt from a saved state without drawing from the global RNG, a class-weighted linear probe over
the classes seen so far. Every test runs on hand-made tensors in well under a second."""
import io
from math import exp, log

import numpy as np
import pytest
import torch

from ticlip_core.memclip.methods import get_method
from ticlip_core.memclip.methods.base import TaskBatch, TaskContext
from ticlip_core.memclip.supcon import ird_loss, random_resized_crop_flip, supcon_loss, train_linear_probe

from memclip_toys import Model


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# Four unit vectors: anchors 0, 1 (class 0, the current task's) lie in the xy-plane; rows 2, 3 are
# memory samples of an old class 1. Dot products: s01 = 0.6, s02 = 0, s03 = 0.8, s12 = 0.48,
# s13 = 0.48, s23 = 0.36.
Z = torch.tensor([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [0.0, 0.6, 0.8], [0.8, 0.0, 0.6]], dtype=torch.float64)
LABELS = torch.tensor([0, 0, 1, 1])
ANCHORS = torch.tensor([True, True, False, False])
T, BASE = 0.5, 0.25  # the loss is scaled by T / BASE = 2


def test_asymmetric_supcon_equals_the_hand_computed_value():
    # anchor 0: positive 1 (0.6 / T = 1.2) among 1, 2, 3 (1.2, 0, 1.6); anchor 1: positive 0 among 0, 2, 3
    row0 = -(1.2 - log(exp(1.2) + exp(0.0) + exp(1.6)))
    row1 = -(1.2 - log(exp(1.2) + exp(0.96) + exp(0.96)))
    expected = (T / BASE) * (row0 + row1) / 4  # Co2L divides by every row, anchors or not
    got = supcon_loss(Z, LABELS, T, anchors=ANCHORS, base_temperature=BASE)
    assert got.item() == pytest.approx(expected, rel=1e-9)


def _asym(z, labels=LABELS):
    return supcon_loss(z, labels, T, anchors=ANCHORS, base_temperature=BASE).item()


def test_a_non_anchor_counts_only_as_a_positive_or_negative_of_the_anchors():
    base = _asym(Z)
    # mirror row 3 through the xy-plane: its similarities to the anchors stay, the one to row 2
    # (its own positive) changes from 0.36 to -0.48
    moved = Z.clone()
    moved[3, 2] = -0.6
    assert _asym(moved) == pytest.approx(base, rel=1e-12)
    # the symmetric SupCon (every row an anchor) does see that change
    assert supcon_loss(moved, LABELS, T, base_temperature=BASE).item() != pytest.approx(
        supcon_loss(Z, LABELS, T, base_temperature=BASE).item(), rel=1e-6)
    # giving the memory rows different classes (no positives of their own) changes nothing either
    relabelled = torch.tensor([0, 0, 1, 2])
    assert _asym(Z, relabelled) == pytest.approx(base, rel=1e-12)
    # but a memory sample moved towards anchor 0 is a harder negative: the loss grows
    closer = Z.clone()
    closer[2] = torch.tensor([0.6, 0.0, 0.8], dtype=torch.float64)
    assert _asym(closer) > base + 0.05


def test_non_anchors_get_gradients_only_through_the_anchors_terms():
    z = Z.clone().requires_grad_(True)
    supcon_loss(z, LABELS, T, anchors=ANCHORS, base_temperature=BASE).backward()
    # row 3's gradient is what anchors 0 and 1 send it as a negative: d/dz3 of the two rows' log-sums
    d0 = [exp(1.2), 1.0, exp(1.6)]   # anchor 0's denominators over rows 1, 2, 3
    d1 = [exp(1.2), exp(0.96), exp(0.96)]  # anchor 1's over rows 0, 2, 3
    w0, w1 = d0[2] / sum(d0), d1[2] / sum(d1)
    expected = (T / BASE) / 4 * (w0 * Z[0] + w1 * Z[1]) / T
    assert torch.allclose(z.grad[3], expected, atol=1e-12)


def _softmax(xs):
    es = [exp(x) for x in xs]
    return [e / sum(es) for e in es]


def _ird_by_hand(cur, past, ct, pt):
    n, total = len(cur), 0.0
    for i in range(n):
        others = [j for j in range(n) if j != i]
        p = _softmax([sum(a * b for a, b in zip(cur[i], cur[j])) / ct for j in others])
        q = _softmax([sum(a * b for a, b in zip(past[i], past[j])) / pt for j in others])
        total += -sum(qj * log(pj) for pj, qj in zip(p, q))
    return total / n


CUR = [[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]]
PAST = [[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]]


def test_ird_equals_the_hand_computed_cross_entropy():
    got = ird_loss(torch.tensor(CUR, dtype=torch.float64), torch.tensor(PAST, dtype=torch.float64), 0.5, 0.25)
    assert got.item() == pytest.approx(_ird_by_hand(CUR, PAST, 0.5, 0.25), rel=1e-9)
    # Co2L's own temperatures (0.2, 0.01): logits up to 100 stay finite
    got = ird_loss(torch.tensor(CUR), torch.tensor(PAST), 0.2, 0.01)
    assert got.item() == pytest.approx(_ird_by_hand(CUR, PAST, 0.2, 0.01), rel=1e-5)


def test_ird_is_minimal_when_the_current_model_agrees_with_the_past_one():
    past = torch.tensor(PAST, dtype=torch.float64)
    agree = ird_loss(past, past, 0.5, 0.5).item()
    # Co2L's form is a cross-entropy: at agreement it is the entropy of the past distributions
    entropy = 0.0
    for i in range(3):
        q = _softmax([sum(a * b for a, b in zip(PAST[i], PAST[j])) / 0.5 for j in range(3) if j != i])
        entropy += -sum(x * log(x) for x in q)
    assert agree == pytest.approx(entropy / 3, rel=1e-9)
    assert ird_loss(torch.tensor(CUR, dtype=torch.float64), past, 0.5, 0.5).item() > agree + 0.01


def test_ird_sends_no_gradient_to_the_past_features():
    cur, past = torch.tensor(CUR, requires_grad=True), torch.tensor(PAST, requires_grad=True)
    ird_loss(cur, past, 0.2, 0.01).backward()
    assert past.grad is None and cur.grad is not None and cur.grad.abs().sum() > 0


def test_views_are_crops_and_flips_drawn_from_the_global_rng():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    # full-size square crops: each view is the image or its mirror image, exactly
    torch.manual_seed(0)
    out = random_resized_crop_flip(x, 1.0, ratio=(1.0, 1.0))
    for a, b in zip(out, x):
        assert torch.allclose(a, b, atol=1e-5) or torch.allclose(a, b.flip(-1), atol=1e-5)
    torch.manual_seed(3)
    first = random_resized_crop_flip(x, 0.2)
    torch.manual_seed(3)
    assert torch.equal(first, random_resized_crop_flip(x, 0.2))
    assert not torch.equal(first, random_resized_crop_flip(x, 0.2))


def test_the_probe_weights_classes_and_acts_on_raw_features():
    # class 0: 6 samples around (10, 0), class 1: 2 samples around (12, 1); separable
    feats = torch.tensor([[10.0, 0.0], [10.1, 0.1], [9.9, -0.1], [10.0, 0.2], [10.2, -0.2], [9.8, 0.0],
                          [12.0, 1.0], [12.1, 0.9]])
    targets = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1])
    kw = dict(epochs=50, lr=1.0, batch_size=256, seed=0, milestones=(0.6,), gamma=0.1)
    weight, bias = train_linear_probe(feats, targets, 3, balanced=True, **kw)
    assert weight.shape == (3, 2) and bias.shape == (3,)
    assert torch.equal((feats @ weight.T + bias).argmax(1), targets)
    # class 2 has no sample: it never wins
    assert ((feats @ weight.T + bias).argmax(1) != 2).all()
    # the balanced loss moves the boundary towards the frequent class: the midpoint is class 1's
    mid = torch.tensor([[11.0, 0.5]])
    plain_w, plain_b = train_linear_probe(feats, targets, 3, balanced=False, **kw)
    assert ((mid @ weight.T + bias)[0, 1] - (mid @ weight.T + bias)[0, 0]) > \
        ((mid @ plain_w.T + plain_b)[0, 1] - (mid @ plain_w.T + plain_b)[0, 0])


# -- the method on a stand-in image tower ------------------------------------------------------
class Data:
    """A stand-in for TaskData: rows 0-3 are the task's (classes 5, 2), rows 4-5 the memory
    (class 7, an old task's; none at task 0)."""

    def __init__(self, memory=True):
        g = torch.Generator().manual_seed(0)
        self.labels = np.array([5, 5, 2, 2, 7, 7])
        sign = torch.tensor([1.0, 1.0, -1.0, -1.0, 0.0, 0.0]).view(6, 1, 1, 1)
        self.images = sign + 0.1 * torch.randn(6, 3, 8, 8, generator=g)
        self.images[4:] += torch.linspace(-1, 1, 8)  # the memory class: a gradient across the image
        self.task_rows, self.memory_rows, self.seed = [0, 1, 2, 3], [4, 5] if memory else [], 11

    def batches(self, rows, *, epochs=1, seed=None, shuffle=True):
        rows = list(rows)
        yield rows, self.images[rows], torch.as_tensor(self.labels[rows])


def _ctx(t, model):
    return TaskContext(t=t, model=model, device="cpu", benchmark="b", scenario="class",
                       classnames=[f"c{i}" for i in range(8)], seen_classes=[7, 5, 2] if t else [5, 2],
                       num_train_samples=6, memory_size=2, data=Data(memory=t > 0), image_macs=100)


def _batch(data, rows):
    return TaskBatch(sims=None, labels=torch.as_tensor(data.labels[rows]), indices=torch.tensor(rows), seen=None,
                     logit_scale=None, images=data.images[rows])


def test_a_batch_of_memory_samples_has_no_anchors():
    torch.manual_seed(0)
    method = get_method("co2l", proj_dim=3, distill_power=0.0)
    ctx = _ctx(1, Model())
    method.before_step(ctx)
    assert method._current.tolist() == [2, 5]
    assert method.loss(ctx, _batch(ctx.data, [4, 5])).item() == 0.0
    assert method.loss(ctx, _batch(ctx.data, [0, 1, 4, 5])).item() > 0.0
    # with distillation, the frozen previous model gets no gradient and the tower does
    method = get_method("co2l", proj_dim=3)
    method.before_step(ctx)
    method.loss(ctx, _batch(ctx.data, [0, 2, 4, 5])).backward()
    assert all(p.grad is None and not p.requires_grad for m in method._frozen for p in m.parameters())
    assert ctx.model.visual.fc.weight.grad.abs().sum() > 0


def test_the_heads_come_back_from_a_saved_state_without_drawing_random_numbers():
    torch.manual_seed(0)
    model, method = Model(), get_method("co2l", proj_dim=3)
    method.before_step(_ctx(0, model))
    method.after_step(_ctx(0, model))
    buffer = io.BytesIO()
    torch.save(method.state_dict(), buffer)  # as the chain store does, read back with weights_only
    buffer.seek(0)
    resumed = get_method("co2l", proj_dim=3)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    rng = torch.get_rng_state()
    resumed.before_step(_ctx(1, model))
    assert torch.equal(torch.get_rng_state(), rng)
    for a, b in zip(resumed._heads["projector"].parameters(), method._heads["projector"].parameters()):
        assert torch.equal(a, b)
    assert torch.equal(resumed.state_dict()["probe"]["weight"], method.state_dict()["probe"]["weight"])


def test_the_probe_is_fitted_on_task_and_memory_over_the_seen_classes():
    torch.manual_seed(0)
    model, method = Model(), get_method("co2l", proj_dim=3, probe_epochs=60)
    ctx = _ctx(1, model)
    method.before_step(ctx)
    before = ctx.extra_macs
    method.after_step(ctx)
    assert ctx.extra_macs - before == 6 * ctx.image_macs  # one pass over the task's 4 rows and the memory's 2
    model.eval()
    with torch.no_grad():
        scores = method.scorer(ctx)(ctx.data.images)
    assert scores.shape == (6, 3)  # classes seen so far, in ctx.seen_classes' order: 7, 5, 2
    assert scores.argmax(1).tolist() == [1, 1, 2, 2, 0, 0]
