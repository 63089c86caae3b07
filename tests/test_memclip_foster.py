"""FOSTER's mechanism on a toy (linear "image towers" on 4-d hand-made inputs, d = 3, four
classes): the effective-number weights against the hand-computed formula, the old extractor
bit-identical through boosting, the boosting loss's parts, and compression making the student's
outputs match the boosted teacher's (the student is linear like the teacher, so it can)."""
import numpy as np
import pytest
import torch

from ticlip_core.memclip.methods import get_method
from ticlip_core.memclip.methods.base import TaskBatch, TaskContext
from ticlip_core.losses import kd_loss
from ticlip_core.memclip.methods.foster import bkd_loss, effective_number_weights

from memclip_toys import D, IN, Toy


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class ToyData:
    """``TaskData``'s interface over hand-made inputs: rows index ``x``."""

    def __init__(self, x, labels, task_rows, memory_rows, seed=0, batch_size=8):
        self.x, self.labels = x, np.asarray(labels)
        self.task_rows, self.memory_rows, self.seed, self.batch_size = task_rows, memory_rows, seed, batch_size

    def batches(self, rows, *, epochs=1, seed=None, shuffle=True):
        g = torch.Generator().manual_seed(self.seed if seed is None else seed)
        rows = list(rows)
        for _ in range(epochs):
            order = torch.randperm(len(rows), generator=g).tolist() if shuffle else range(len(rows))
            ordered = [rows[i] for i in order]
            for s in range(0, len(ordered), self.batch_size):
                b = ordered[s:s + self.batch_size]
                yield b, self.x[b], torch.as_tensor(self.labels[b])


def _ctx(model, t, seen, data):
    return TaskContext(t=t, model=model, benchmark="toy", scenario="class", classnames=["a", "b", "c", "d"],
                       seen_classes=seen, num_train_samples=len(data.labels), memory_size=4, data=data, image_macs=7)


def _boost(method, ctx, steps, lr=0.05):
    """The train loop's part: before_step, ``steps`` passes over the task's batches, no after_step."""
    method.before_step(ctx)
    opt = torch.optim.Adam(method.trainable_parameters(ctx), lr=lr)
    seen = torch.tensor(ctx.seen_classes)
    rows = sorted(set(ctx.data.task_rows) | set(ctx.data.memory_rows))
    for _, x, y in ctx.data.batches(rows, epochs=steps):
        loss = method.loss(ctx, TaskBatch(sims=None, labels=y, indices=None, seen=seen, logit_scale=None, images=x))
        opt.zero_grad()
        loss.backward()
        opt.step()


@pytest.fixture
def toy():
    torch.manual_seed(0)
    labels = [0, 1] * 8 + [2, 3] * 8          # rows 0-15: task 0, rows 16-31: task 1
    centres = torch.randn(4, IN) * 2
    x = centres[torch.tensor(labels)] + 0.3 * torch.randn(32, IN)
    return Toy(), x, labels


def test_effective_number_weights_match_the_hand_computed_formula():
    beta = 0.96
    # (1 - b) / (1 - b^n): n = 2 -> 0.04 / 0.0784; n = 10 -> 0.04 / (1 - 0.96^10)
    raw = [0.04 / 0.0784, 0.04 / 0.0784, 0.04 / (1 - 0.96 ** 10), 0.04 / (1 - 0.96 ** 10)]
    expected = [r / sum(raw) * 4 for r in raw]
    assert expected[0] == pytest.approx(1.62086, abs=1e-5) and expected[2] == pytest.approx(0.37914, abs=1e-5)
    got = effective_number_weights([2, 2, 10, 10], beta)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6)
    assert effective_number_weights([5, 5, 5], 0.97).tolist() == pytest.approx([1.0, 1.0, 1.0])


def test_kd_and_balanced_kd_by_hand():
    pred, soft = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 2.0]])
    p = torch.softmax(soft / 2, 1)[0]
    logq = torch.log_softmax(pred / 2, 1)[0]
    assert kd_loss(pred, soft, 2).item() == pytest.approx(-(p * logq).sum().item(), rel=1e-6)
    w = torch.tensor([3.0, 1.0])
    pw = p * w / (p * w).sum()
    assert bkd_loss(pred, soft, 2, w).item() == pytest.approx(-(pw * logq).sum().item(), rel=1e-6)


def test_foster_boosting_keeps_the_old_extractor_and_compression_matches_the_teacher(toy):
    model, x, labels = toy
    # beta2 = 0 gives every class weight 1, so balanced KD is plain KD and the student can
    # reproduce the teacher's argmax (with beta2 < 1 it reproduces the reweighted target)
    foster = get_method("foster", compression_epochs=100, compression_lr=0.05, beta2=0.0)
    data0 = ToyData(x, labels, task_rows=list(range(16)), memory_rows=[])
    ctx0 = _ctx(model, 0, [0, 1], data0)
    _boost(foster, ctx0, steps=20)
    foster.after_step(ctx0)
    assert foster.old_extractor is None and foster.head.weight.shape == (2, D)
    after_task0 = [p.detach().clone() for p in model.visual.parameters()]
    head0 = foster.head.weight.detach().clone()

    # task 1: its 16 rows plus a memory of 2 rows per old class
    data1 = ToyData(x, labels, task_rows=list(range(16, 32)), memory_rows=[0, 1, 2, 3])
    ctx1 = _ctx(model, 1, [0, 1, 2, 3], data1)
    foster.before_step(ctx1)
    # logit adjustment from the rows the task trains on: 2, 2, 8, 8 per class
    raw = [(1 - 0.96) / (1 - 0.96 ** n) for n in (2, 2, 8, 8)]
    np.testing.assert_allclose(foster.per_class_weights.numpy(), [r / sum(raw) * 4 for r in raw], rtol=1e-6)
    assert foster.head.weight.shape == (4, 2 * D) and torch.equal(foster.head.weight[:2, :D], head0)
    assert foster.fe_head.weight.shape == (4, D) and foster.old_head.weight.shape == (2, D)
    macs = ctx1.extra_macs
    _boost(foster, ctx1, steps=60)
    assert ctx1.extra_macs - macs == 60 * 20 * 7  # one frozen forward per boosting sample
    # the old extractor and head are bit-identical after boosting; the new extractor moved
    assert all(torch.equal(a, b) for a, b in zip(foster.old_extractor.parameters(), after_task0))
    assert torch.equal(foster.old_head.weight, head0)
    assert not all(torch.equal(a, b) for a, b in zip(model.visual.parameters(), after_task0))

    with torch.no_grad():
        teacher = foster.head(torch.cat([foster.old_extractor(x), model.visual(x)], dim=1))
    foster.after_step(ctx1)
    assert foster.old_extractor is None and foster.fe_head is None
    assert foster.head.weight.shape == (4, D)
    with torch.no_grad():
        student = foster.scorer(ctx1)(x)
    # the student matches the teacher's tempered probabilities: near-zero KL, far below a
    # uniform guess's, and the same argmax
    target = torch.softmax(teacher / 2, 1)
    kl = (target * (target.log() - torch.log_softmax(student / 2, 1))).sum(1).mean().item()
    uniform_kl = (target * (target.log() - torch.log(torch.tensor(0.25)))).sum(1).mean().item()
    assert kl < 0.02 and kl < 0.05 * uniform_kl, (kl, uniform_kl)
    assert (student.argmax(1) == teacher.argmax(1)).float().mean().item() >= 0.95


def test_foster_state_round_trip_and_compression_costs(toy):
    model, x, labels = toy
    foster = get_method("foster", compression_epochs=1, compression_lr=0.01)
    data0 = ToyData(x, labels, task_rows=list(range(16)), memory_rows=[])
    _boost(foster, _ctx(model, 0, [0, 1], data0), steps=2)
    foster.after_step(_ctx(model, 0, [0, 1], data0))
    data1 = ToyData(x, labels, task_rows=list(range(16, 32)), memory_rows=[0, 1, 2, 3])
    ctx1 = _ctx(model, 1, [0, 1, 2, 3], data1)
    _boost(foster, ctx1, steps=1)
    mid = foster.state_dict()
    assert mid["done"] is False and mid["old"] is not None and mid["per_cls_weights"].shape == (4,)
    # the train loop's mid-task resume copies the state into the built modules in place
    head = foster.head
    with torch.no_grad():
        head.weight.add_(1.0)
    foster.load_state_dict(mid)
    assert foster.head is head and torch.equal(head.weight, mid["head"]["weight"])

    macs = ctx1.extra_macs
    foster.after_step(ctx1)
    # teacher: 2 extractor forwards per row once; student: forward + backward (x3) per row per epoch
    assert ctx1.extra_macs - macs == 20 * 2 * 7 + 20 * 3 * 7
    done = foster.state_dict()
    assert done["done"] is True and done["old"] is None and done["task_sizes"] == [2, 2]

    fresh = get_method("foster", compression_epochs=1, compression_lr=0.01)
    fresh.load_state_dict(done)
    assert fresh.head is None
    ctx1b = _ctx(model, 1, [0, 1, 2, 3], data1)
    np.testing.assert_array_equal(fresh.scorer(ctx1b)(x).detach().numpy(), foster.scorer(ctx1)(x).detach().numpy())


def test_the_student_starts_from_the_old_extractor_and_head_and_az_keeps_new_rows_off_old_features(toy):
    model, x, labels = toy
    # compression at LR 0 (heads too) leaves the student as it starts: the old extractor, the old head's rows
    foster = get_method("foster", compression_epochs=1, compression_lr=0.0, head_lr=0.0, oofc="az")
    data0 = ToyData(x, labels, task_rows=list(range(16)), memory_rows=[])
    _boost(foster, _ctx(model, 0, [0, 1], data0), steps=3)
    foster.after_step(_ctx(model, 0, [0, 1], data0))
    old = [p.detach().clone() for p in model.visual.parameters()]
    head0 = {k: v.detach().clone() for k, v in foster.head.state_dict().items()}
    ctx1 = _ctx(model, 1, [0, 1, 2, 3], ToyData(x, labels, task_rows=list(range(16, 32)), memory_rows=[0, 1, 2, 3]))
    _boost(foster, ctx1, steps=3)
    assert torch.equal(foster.head.weight[2:, :D], torch.zeros(2, D))  # "az": zero and kept at zero
    assert foster.head.weight[:, D:].abs().sum() > 0
    foster.after_step(ctx1)
    assert all(torch.equal(a, b) for a, b in zip(model.visual.parameters(), old))
    assert torch.equal(foster.head.weight[:2], head0["weight"]) and torch.equal(foster.head.bias[:2], head0["bias"])


def test_foster_options_are_checked():
    with pytest.raises(ValueError, match="oofc"):
        get_method("foster", oofc="zz")
    with pytest.raises(ValueError, match="compression_epochs"):
        get_method("foster", compression_epochs=0)
