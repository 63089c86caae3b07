"""DER's mechanism on a toy (a linear "image tower" on 4-d hand-made inputs, d = 3): old
extractors frozen bit for bit while the new one trains, the auxiliary head's new+1 outputs and
targets, the grown head keeping the old classes' weights, the concatenated feature width, and a
state round trip that rebuilds the same modules without drawing from the RNG."""
import numpy as np
import pytest
import torch

from ticlip_core.memclip.expansion import concat_features
from ticlip_core.memclip.methods import get_method
from ticlip_core.memclip.methods.base import TaskBatch, TaskContext
from ticlip_core.memclip.methods.der import aux_targets

from memclip_toys import D, IN, Toy


def _ctx(model, t, seen):
    return TaskContext(t=t, model=model, benchmark="toy", scenario="class", classnames=[f"c{i}" for i in range(6)],
                       seen_classes=seen, num_train_samples=12, memory_size=4, image_macs=7)


def _train(method, ctx, x, y, steps=5):
    method.before_step(ctx)
    opt = torch.optim.SGD(method.trainable_parameters(ctx), lr=0.1)
    seen = torch.tensor(ctx.seen_classes)
    for _ in range(steps):
        loss = method.loss(ctx, TaskBatch(sims=None, labels=y, indices=None, seen=seen, logit_scale=None, images=x))
        opt.zero_grad()
        loss.backward()
        opt.step()
    method.after_step(ctx)


def _params(module):
    return [p.detach().clone() for p in module.parameters()]


@pytest.fixture
def toy():
    torch.manual_seed(0)
    x = torch.randn(12, IN)
    y = torch.tensor([0, 1, 2, 3, 4, 5] * 2)
    return Toy(), x, y


def test_aux_targets_map_old_classes_to_0_and_new_to_1_to_n():
    local = torch.tensor([0, 1, 2, 3, 4])
    assert aux_targets(local, 2).tolist() == [0, 0, 1, 2, 3]
    assert aux_targets(local, 0).tolist() == [1, 2, 3, 4, 5]


def test_der_freezes_old_extractors_grows_heads_and_concatenates(toy):
    model, x, y = toy
    der = get_method("der")
    ctx0 = _ctx(model, 0, [0, 1])
    _train(der, ctx0, x[y < 2], y[y < 2])
    assert der.extractors == [] and der.aux_head is None and der.head.weight.shape == (2, D)
    old_head = {k: v.detach().clone() for k, v in der.head.state_dict().items()}
    after_task0 = _params(model.visual)

    ctx1 = _ctx(model, 1, [0, 1, 2, 3])
    der.before_step(ctx1)
    # the main head covers all four seen classes on 2 x d features; old classes keep their weights
    assert der.head.weight.shape == (4, 2 * D)
    assert torch.equal(der.head.weight[:2, :D], old_head["weight"])
    assert torch.equal(der.head.bias[:2], old_head["bias"])
    assert torch.equal(der.head.bias[2:], torch.zeros(2))
    assert der.aux_head.weight.shape == (2 + 1, D)  # two new classes + "old"
    assert len(der.extractors) == 1
    assert all(torch.equal(a, b) for a, b in zip(_params(der.extractors[0]), after_task0))
    assert not any(p.requires_grad for p in der.extractors[0].parameters())
    groups = der.trainable_parameters(ctx1)
    trainable = {id(p) for g in groups for p in g["params"]}
    # the encoder at the task's LR, the two heads (they start from scratch) at head_lr
    assert "lr" not in groups[0] and groups[1]["lr"] == der.options["head_lr"]
    assert {id(p) for p in groups[1]["params"]} == {id(p) for m in (der.head, der.aux_head) for p in m.parameters()}
    assert not trainable & {id(p) for p in der.extractors[0].parameters()}
    assert {id(p) for p in model.visual.parameters()} <= trainable
    assert concat_features(der.extractors, model.visual, x)[0].shape == (12, 2 * D)

    macs_before = ctx1.extra_macs
    der.options["weight_align"] = False  # keep the trained rows as they were for the check below
    # train on task 1 (step by step so the frozen copy can be compared after training)
    opt = torch.optim.SGD(der.trainable_parameters(ctx1), lr=0.1)
    seen = torch.tensor(ctx1.seen_classes)
    xs, ys = x[y < 4], y[y < 4]
    for _ in range(5):
        loss = der.loss(ctx1, TaskBatch(sims=None, labels=ys, indices=None, seen=seen, logit_scale=None, images=xs))
        opt.zero_grad()
        loss.backward()
        opt.step()
    der.after_step(ctx1)
    assert ctx1.extra_macs - macs_before == 5 * len(xs) * 7  # one frozen extractor forward per batch
    # the frozen extractor is bit-identical; the trained one moved
    assert all(torch.equal(a, b) for a, b in zip(_params(der.extractors[0]), after_task0))
    assert not all(torch.equal(a, b) for a, b in zip(_params(model.visual), after_task0))
    assert der.aux_head is None  # dropped after the task

    ctx2 = _ctx(model, 2, [0, 1, 2, 3, 4, 5])
    head1 = der.head.weight.detach().clone()
    der.before_step(ctx2)
    assert len(der.extractors) == 2 and der.head.weight.shape == (6, 3 * D)
    assert torch.equal(der.head.weight[:4, :2 * D], head1)
    assert der.aux_head.weight.shape == (2 + 1, D)
    assert concat_features(der.extractors, model.visual, x)[0].shape == (12, 3 * D)
    scores = der.scorer(ctx2)(x)
    assert scores.shape == (12, 6)


def test_der_weight_align_scales_new_rows_to_the_old_mean_norm(toy):
    model, x, y = toy
    der = get_method("der")
    _train(der, _ctx(model, 0, [0, 1]), x[y < 2], y[y < 2])
    _train(der, _ctx(model, 1, [0, 1, 2, 3]), x[y < 4], y[y < 4])
    norms = der.head.weight.norm(dim=1)
    assert norms[2:].mean().item() == pytest.approx(norms[:2].mean().item(), rel=1e-5)


def test_der_state_round_trip_rebuilds_the_same_modules_without_drawing_from_the_rng(toy):
    model, x, y = toy
    der = get_method("der")
    _train(der, _ctx(model, 0, [0, 1]), x[y < 2], y[y < 2])
    _train(der, _ctx(model, 1, [0, 1, 2, 3]), x[y < 4], y[y < 4])
    state = der.state_dict()
    assert state["task_sizes"] == [2, 2] and len(state["frozen"]) == 1 and state["done"] is True
    assert all(isinstance(v, torch.Tensor) for v in state["frozen"][0].values())

    fresh = get_method("der")
    fresh.load_state_dict(state)
    assert fresh.head is None  # pending until the next before_step
    assert torch.equal(fresh.state_dict()["head"]["weight"], state["head"]["weight"])  # a resumed chain saves it again
    ctx2 = _ctx(model, 2, [0, 1, 2, 3, 4, 5])
    torch.manual_seed(5)
    der.before_step(ctx2)
    torch.manual_seed(5)
    fresh.before_step(_ctx(model, 2, [0, 1, 2, 3, 4, 5]))
    assert torch.equal(der.head.weight, fresh.head.weight) and torch.equal(der.aux_head.weight, fresh.aux_head.weight)
    assert len(fresh.extractors) == 2
    for a, b in zip(der.extractors, fresh.extractors):
        assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    np.testing.assert_array_equal(der.scorer(ctx2)(x).detach().numpy(), fresh.scorer(ctx2)(x).detach().numpy())
