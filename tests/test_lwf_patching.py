"""LwF's distillation term and Patching's weight interpolation and validation-only alpha search."""
import copy
import json

import pytest
import torch

import ticlip_core.tic.evaluate
from conftest import micro_config
from ticlip_core.data.bucketing import step_shards
from ticlip_core.data.loader import PixelSpec, train_batches
from ticlip_core.engine.weights import interpolate_state_dicts
from ticlip_core.losses import similarity_distillation_loss
from ticlip_core.tic.methods import get_method
from ticlip_core.tic.methods.patching import Patching
from ticlip_core.models import create_model
from ticlip_core.engine.method import StepContext
from ticlip_core.tic.train import train_step

STEPS = ["2014", "2015", "2016"]


@pytest.fixture(scope="module")
def micro_model():
    model, _, _, tokenizer = create_model("ticlip-vit-micro", None, seed=0)
    return model, tokenizer


def _batch(tiny_world, model, tokenizer):
    shards = step_shards(tiny_world / "steps", "2015", "train")
    return next(train_batches(shards, batch_size=16, pixels=PixelSpec.of(model), tokenizer=tokenizer,
                              num_samples=16, seed=0, shuffle_buffer=10))


def test_lwf_term_is_zero_for_the_same_model_and_positive_after_a_change(tiny_world, micro_model):
    model, tokenizer = micro_model
    student = copy.deepcopy(model).train()
    batch = _batch(tiny_world, model, tokenizer)
    lwf = get_method("lwf", beta=2.0)
    ctx = StepContext(lwf, 1, STEPS, student, tokenizer, micro_config(), torch.device("cpu"),
                      forward_macs_per_sample=1000)
    lwf.before_step(ctx)
    same = lwf.extra_loss(ctx, batch, student(batch.images, batch.texts))
    assert same.item() == pytest.approx(0.0, abs=1e-6)
    assert ctx.extra_macs == 1000 * len(batch.keys)  # the teacher's forward passes are counted
    with torch.no_grad():
        for p in student.visual.parameters():
            p.add_(0.05 * torch.randn_like(p))
    changed = lwf.extra_loss(ctx, batch, student(batch.images, batch.texts))
    assert changed.item() > 1e-4
    changed.backward()  # the gradient reaches the student, not the frozen teacher
    assert student.visual.conv1.weight.grad is not None
    assert all(p.grad is None for p in lwf.teacher.parameters())


def test_distillation_is_kl_of_rows_both_ways():
    s, t = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    def kl_rows(a, b):  # mean over rows of KL(softmax(b) || softmax(a))
        p, q = b.softmax(1), a.softmax(1)
        return (p * (p.log() - q.log())).sum(1).mean()
    expected = (kl_rows(s, t) + kl_rows(s.T, t.T)) / 2
    assert similarity_distillation_loss(s, t).item() == pytest.approx(expected.item(), rel=1e-6)


def test_interpolation_ends_are_exact(micro_model):
    a = {k: v.clone() for k, v in micro_model[0].state_dict().items()}
    b = {k: (v + 1.5 if v.is_floating_point() else v.clone()) for k, v in a.items()}
    assert all(torch.equal(interpolate_state_dicts(a, b, 0.0)[k], a[k]) for k in a)
    assert all(torch.equal(interpolate_state_dicts(a, b, 1.0)[k], b[k]) for k in a)
    mid = interpolate_state_dicts(a, b, 0.5)
    assert torch.allclose(mid["logit_scale"], a["logit_scale"] + 0.75)
    with pytest.raises(ValueError, match="keys"):
        interpolate_state_dicts(a, {k: v for k, v in b.items() if k != "logit_scale"}, 0.5)


def _patching_step(tiny_world, tmp_path, grid, tag, **options):
    # a fresh AdamW at step 2015: these tests are about the alpha search (carrying: test_optimizer_carry)
    cfg = micro_config(budget_samples=48, batch_size=16, carry_optimizer=False)
    cfg["methods"]["patching"].update(alpha_grid=grid, **options)
    steps_dir = tiny_world / "steps"
    shards = {s: step_shards(steps_dir, s, "train") for s in STEPS}
    val = {s: step_shards(steps_dir, s, "val") for s in STEPS}
    common = dict(shards_by_step=shards, val_shards_by_step=val)
    first = tmp_path / "t0.pt"
    if not first.exists():
        train_step(cfg, method_name="patching", step="2014", init_checkpoint=None, out_model=str(first),
                   out_log=str(tmp_path / "t0.csv"), out_compute=str(tmp_path / "t0.json"), **common)
    train_step(cfg, method_name="patching", step="2015", init_checkpoint=str(first),
               out_model=str(tmp_path / f"{tag}.pt"), out_log=str(tmp_path / f"{tag}.csv"),
               out_compute=str(tmp_path / f"{tag}.json"), **common)
    return (torch.load(first, weights_only=True), torch.load(tmp_path / f"{tag}.pt", weights_only=True),
            json.loads((tmp_path / f"{tag}.json").read_text()))


def test_patching_alpha_zero_keeps_the_previous_patched_model(tiny_world, tmp_path):
    before, after, compute = _patching_step(tiny_world, tmp_path, [0.0], "zero")
    assert compute["method_info"]["alpha"] == 0.0
    assert all(torch.equal(before[k], after[k]) for k in before)
    _, tuned, compute = _patching_step(tiny_world, tmp_path, [1.0], "one")
    assert compute["method_info"]["alpha"] == 1.0
    assert not all(torch.equal(before[k], tuned[k]) for k in before)  # alpha = 1: the fine-tuned weights


def _spy_on_validation(monkeypatch):
    """Every shard the alpha search encodes, and the number of samples of each encoding."""
    read, samples = [], []
    real = ticlip_core.tic.evaluate.encode_eval_set
    def spy(model, tokenizer, shards, *args, **kwargs):
        read.extend(shards)
        enc = real(model, tokenizer, shards, *args, **kwargs)
        samples.append(len(enc.meta))
        return enc
    monkeypatch.setattr(ticlip_core.tic.evaluate, "encode_eval_set", spy)
    return read, samples


def test_patching_alpha_search_reads_validation_data_only(tiny_world, tmp_path, monkeypatch):
    read, samples = _spy_on_validation(monkeypatch)
    grid = [0.0, 0.5, 1.0]
    _, _, compute = _patching_step(tiny_world, tmp_path, grid, "search")
    info = compute["method_info"]
    # the default: every step seen so far, the new one included
    assert info["selection_steps"] == ["2014", "2015"] and info["alpha_selection"] == "seen"
    assert set(info["alpha_scores"]) == {"0.0", "0.5", "1.0"} and info["alpha"] in grid
    best = max(info["alpha_scores"].values())
    assert info["alpha"] == max(a for a in grid if info["alpha_scores"][str(a)] == best)  # ties: the larger
    expected = [sh for s in ("2014", "2015") for sh in step_shards(tiny_world / "steps", s, "val")]
    assert read and set(read) == set(expected)  # never a test (or training) shard
    assert len(samples) == len(grid) * 2  # one encoding per alpha and step
    # the search's forward passes are counted, every one of them
    assert compute["extra_macs"] == compute["macs_per_sample"] // 3 * sum(samples) > 0


def test_patching_previous_selection_reads_the_previous_steps_only(tiny_world, tmp_path, monkeypatch):
    read, samples = _spy_on_validation(monkeypatch)
    _, _, compute = _patching_step(tiny_world, tmp_path, [0.0, 1.0], "previous", alpha_selection="previous")
    info = compute["method_info"]
    assert info["selection_steps"] == ["2014"] and info["alpha_selection"] == "previous"
    assert set(read) == set(step_shards(tiny_world / "steps", "2014", "val"))
    assert compute["extra_macs"] == compute["macs_per_sample"] // 3 * sum(samples) > 0


# The selection logic on its own: a one-weight model whose weight *is* alpha (0 before the
# step, 1 after fine-tuning), and a validation score per step that is a known function of it.

class _StubPatching(Patching):
    def __init__(self, per_step, **options):
        super().__init__(**options)
        self.per_step, self.calls = per_step, []

    def validation_score(self, ctx, val_shards, decoded=None):
        alpha = ctx.model.weight.item()
        self.calls.append((alpha, list(val_shards)))
        return sum(self.per_step[s](alpha) for s in val_shards) / len(val_shards)


def _select(per_step, t=1, **options):
    method = _StubPatching(per_step, **options)
    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)  # the fine-tuned weights
    ctx = StepContext(method, t, STEPS, model, None, {"eval": {"cache_mb": 0}}, torch.device("cpu"),
                      init_state={"weight": torch.zeros(1, 1)},  # the patched model of t-1
                      val_shards={s: [f"{s}-val.tar"] for s in STEPS})
    method.after_step(ctx)
    return ctx, method


# the old model is best on the old step, the fine-tuned one on the new step; their mean peaks between
OLD_PREFERS_0_NEW_PREFERS_1 = {"2014": lambda a: 1 - a * a, "2015": lambda a: a, "2016": lambda a: a}


def test_patching_selects_alpha_on_every_step_seen_so_far():
    ctx, method = _select(OLD_PREFERS_0_NEW_PREFERS_1)
    # mean of (1 - a^2) and a over the grid 0, .25, .5, .75, 1: .5, .59375, .625, .59375, .5
    assert ctx.info["alpha"] == 0.5  # the previous steps alone would choose 0 and discard the new training
    assert ctx.info["selection_steps"] == ["2014", "2015"]
    assert ctx.info["alpha_scores"] == {"0.0": 0.5, "0.25": 0.59375, "0.5": 0.625, "0.75": 0.59375, "1.0": 0.5}
    assert ctx.model.weight.item() == 0.5  # the model is left at the chosen mix
    assert all(steps == ["2014", "2015"] for _, steps in method.calls) and len(method.calls) == 5
    ctx, _ = _select(OLD_PREFERS_0_NEW_PREFERS_1, t=2)
    assert ctx.info["selection_steps"] == STEPS  # steps[: t + 1]


def test_patching_previous_selection_keeps_the_old_reading():
    ctx, method = _select(OLD_PREFERS_0_NEW_PREFERS_1, alpha_selection="previous")
    assert ctx.info["alpha"] == 0.0 and ctx.model.weight.item() == 0.0
    assert ctx.info["selection_steps"] == ["2014"] and ctx.info["alpha_selection"] == "previous"
    assert all(steps == ["2014"] for _, steps in method.calls)
    ctx, _ = _select(OLD_PREFERS_0_NEW_PREFERS_1, t=2, alpha_selection="previous")
    assert ctx.info["selection_steps"] == ["2014", "2015"]  # steps[: t]


def test_patching_ties_go_to_the_larger_alpha():
    flat = {s: (lambda a: 0.25) for s in STEPS}
    for selection in ("seen", "previous"):
        ctx, _ = _select(flat, alpha_selection=selection)
        assert ctx.info["alpha"] == 1.0 and ctx.model.weight.item() == 1.0
    # the order of the grid does not matter, and a strictly better alpha still wins
    peak = {s: (lambda a: 1.0 if a in (0.25, 0.5) else 0.0) for s in STEPS}
    ctx, method = _select(peak, alpha_grid=[0.5, 1.0, 0.25, 0.0, 0.5])
    assert ctx.info["alpha"] == 0.5
    assert sorted(a for a, _ in method.calls) == [0.0, 0.25, 0.5, 1.0]  # a repeated alpha is scored once


def test_patching_options_are_checked():
    with pytest.raises(ValueError, match="alpha_selection"):
        _select(OLD_PREFERS_0_NEW_PREFERS_1, alpha_selection="all")
    method = get_method("patching")
    model = torch.nn.Linear(1, 1, bias=False)
    ctx = StepContext(method, 1, STEPS, model, None, {}, torch.device("cpu"), init_state=model.state_dict(),
                      val_shards={"2014": ["2014-val.tar"]})  # no validation shards of the new step
    with pytest.raises(ValueError, match=r"no validation shards for step\(s\) \['2015'\]"):
        method.after_step(ctx)
