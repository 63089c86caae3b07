"""CaSSLe's mechanisms (ticlip_core/memclip/methods/cassle.py, memclip/supcon.py): the predictive
contrastive distillation against values computed by hand from the written formula (math.exp,
never the implementation), lower when the predictor maps onto the previous projections, and, in
the method on a tiny stand-in image tower, gradients for the predictor and the tower but none for
the frozen previous model; the probe uses the current domain only. Hand-made tensors throughout."""
from math import exp, log

import numpy as np
import pytest
import torch
from torch import nn

from ticlip_core.memclip.methods import get_method
from ticlip_core.memclip.methods.base import TaskBatch, TaskContext
from ticlip_core.memclip.supcon import contrastive_distill_loss, supcon_loss

from memclip_toys import Model


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# predictor outputs p and previous projections z (unit rows); temperature 0.5, so a logit is 2 s
P = [[1.0, 0.0], [0.0, 1.0]]
Z = [[0.6, 0.8], [1.0, 0.0]]


def test_the_distillation_equals_the_hand_computed_value():
    # L(p, z): row 0 has p0.z = (0.6, 1.0), its positive z0; row 1 has (0.8, 0.0), positive z1
    forward = (-(1.2 - log(exp(1.2) + exp(2.0))) - (0.0 - log(exp(1.6) + exp(0.0)))) / 2
    # L(z, p): row 0 has z0.p = (0.6, 0.8), positive p0; row 1 has (1.0, 0.0), positive p1
    backward = (-(1.2 - log(exp(1.2) + exp(1.6))) - (0.0 - log(exp(2.0) + exp(0.0)))) / 2
    expected = (forward + backward) / 2
    p, z = torch.tensor(P, dtype=torch.float64), torch.tensor(Z, dtype=torch.float64)
    assert contrastive_distill_loss(p, z, 0.5).item() == pytest.approx(expected, rel=1e-9)
    # the rows are L2-normalised first: scaling them changes nothing
    assert contrastive_distill_loss(p * torch.tensor([[2.0], [3.0]], dtype=torch.float64), 5 * z, 0.5).item() == \
        pytest.approx(expected, rel=1e-9)
    # with class positives (both rows one class) each row's positives are both columns
    forward_c = (-((1.2 + 2.0) / 2 - log(exp(1.2) + exp(2.0))) - ((1.6 + 0.0) / 2 - log(exp(1.6) + 1.0))) / 2
    backward_c = (-((1.2 + 1.6) / 2 - log(exp(1.2) + exp(1.6))) - ((2.0 + 0.0) / 2 - log(exp(2.0) + 1.0))) / 2
    got = contrastive_distill_loss(p, z, 0.5, labels=torch.tensor([3, 3]))
    assert got.item() == pytest.approx((forward_c + backward_c) / 2, rel=1e-9)


def test_the_distillation_is_lower_when_the_predictor_matches_the_previous_projection():
    z_prev = torch.eye(3, dtype=torch.float64)
    matched = contrastive_distill_loss(z_prev.clone(), z_prev, 0.2).item()
    shuffled = contrastive_distill_loss(z_prev[[1, 2, 0]], z_prev, 0.2).item()
    halfway = contrastive_distill_loss(z_prev + 0.7 * z_prev[[1, 2, 0]], z_prev, 0.2).item()
    assert matched < halfway < shuffled
    # matched, each row's positive logit is 1 / 0.2 = 5 against two of 0: -log(e^5 / (e^5 + 2))
    assert matched == pytest.approx(-log(exp(5.0) / (exp(5.0) + 2.0)), rel=1e-6)


def test_the_previous_projection_gets_no_gradient_and_the_predictor_does():
    torch.manual_seed(0)
    previous = nn.Linear(3, 2)         # stands for the previous model: trainable, yet the loss must not reach it
    predictor = nn.Linear(2, 2)
    z = torch.randn(4, 2, requires_grad=True)
    loss = contrastive_distill_loss(predictor(z), previous(torch.randn(4, 3)), 0.2)
    loss.backward()
    assert previous.weight.grad is None and previous.bias.grad is None
    assert predictor.weight.grad.abs().sum() > 0 and z.grad.abs().sum() > 0


# -- the method on a stand-in image tower ------------------------------------------------------
class Data:
    """A stand-in for TaskData: the domain's rows 0-3 (classes 0, 1); rows 4-5 (another domain's)
    must not reach the probe."""

    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.labels = np.array([0, 0, 1, 1, 0, 1])
        self.images = torch.randn(6, 3, 8, 8, generator=g)
        self.task_rows, self.memory_rows, self.seed = [0, 1, 2, 3], [], 5
        self.asked = []

    def batches(self, rows, *, epochs=1, seed=None, shuffle=True):
        rows = list(rows)
        self.asked += rows
        yield rows, self.images[rows], torch.as_tensor(self.labels[rows])


def _ctx(t, model):
    return TaskContext(t=t, model=model, device="cpu", benchmark="d", scenario="domain", classnames=["a", "b"],
                       seen_classes=[0, 1], num_train_samples=6, memory_size=None, data=Data(), image_macs=100)


def test_the_method_trains_tower_projector_and_predictor_but_not_the_frozen_model():
    torch.manual_seed(0)
    method = get_method("cassle", proj_hidden_dim=8, proj_dim=3, pred_hidden_dim=8)
    model = Model()
    method.before_step(_ctx(0, model))
    assert set(method._heads) == {"projector"} and method._frozen is None
    ctx = _ctx(1, model)
    method.before_step(ctx)
    assert set(method._heads) == {"projector", "predictor"}
    params = method.trainable_parameters(ctx)
    assert {id(p) for p in method._heads["predictor"].parameters()} <= {id(p) for p in params}
    rows = [0, 1, 2, 3]
    batch = TaskBatch(sims=None, labels=torch.as_tensor(ctx.data.labels[rows]), indices=torch.tensor(rows),
                      seen=None, logit_scale=None, images=ctx.data.images[rows])
    macs = ctx.extra_macs
    method.loss(ctx, batch).backward()
    assert ctx.extra_macs > macs + 2 * 4 * ctx.image_macs  # second view and the frozen tower's two views
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in method._heads["predictor"].parameters()
               if p.dim() == 2)
    assert model.visual.fc.weight.grad.abs().sum() > 0
    frozen = [p for m in method._frozen for p in m.parameters()]
    assert frozen and all(p.grad is None and not p.requires_grad for p in frozen)
    # distill_lamb 0: the loss is the SupCon on the projections alone (same views from the same RNG state)
    plain = get_method("cassle", proj_hidden_dim=8, proj_dim=3, pred_hidden_dim=8, distill_lamb=0.0)
    plain.load_state_dict(method.state_dict())
    plain.before_step(ctx)
    torch.manual_seed(4)
    full = method.loss(ctx, batch).item()
    torch.manual_seed(4)
    sup_only = plain.loss(ctx, batch).item()
    torch.manual_seed(4)
    x, labels = plain.views(batch)
    z = nn.functional.normalize(plain._heads["projector"](model.visual(x)), dim=-1)
    assert sup_only == pytest.approx(supcon_loss(z, labels, 0.1).item(), rel=1e-6)
    assert full > sup_only


def test_the_probe_sees_the_current_domain_only():
    torch.manual_seed(0)
    method = get_method("cassle", proj_hidden_dim=8, proj_dim=3, probe_epochs=5)
    ctx = _ctx(0, Model())
    method.before_step(ctx)
    method.after_step(ctx)
    assert sorted(ctx.data.asked) == [0, 1, 2, 3]
    with torch.no_grad():
        assert method.scorer(ctx)(ctx.data.images).shape == (6, 2)
    assert method.uses_memory is False and method.training_rows(1, [0, 0, 1, 1], [0, 2]) == [2, 3]
