"""The engine's training loop on a toy model (fast, unit level): a resumed loop skips exactly the
batches it trained and ends as an uninterrupted one; progress lines every ``log_every``
iterations; a NaN loss fails naming where."""
import pytest
import torch
import torch.nn.functional as F

from ticlip_core.engine.loop import BatchLoss, NonFiniteLossError, train_loop
from ticlip_core.engine.method import Method, StepContext

SETTINGS = {"precision": "fp32", "log_every": 2, "resume_every": 3}
ITERATIONS = 8


class NoisyMethod(Method):
    """A method with its own generator: its extra loss draws from it, so a resume must restore it."""

    name = "noisy_test"
    study = "test"

    def __init__(self):
        super().__init__()
        self.generator = torch.Generator().manual_seed(7)

    def extra_loss(self, ctx, batch, outputs):
        ctx.extra_macs += 10
        ctx.info["calls"] = ctx.info.get("calls", 0) + 1
        noise = torch.rand(1, generator=self.generator)
        return 0.01 * noise * outputs["y"].pow(2).mean()

    def state_dict(self):
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state):
        self.generator.set_state(state["generator"])


def _batches():
    g = torch.Generator().manual_seed(0)
    for _ in range(ITERATIONS):
        yield torch.randn(4, 3, generator=g), torch.randn(4, 1, generator=g)


def _train(tmp_path, *, seen=None, save_state=None, settings=SETTINGS, nan_at=None):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    method, ctx = NoisyMethod(), StepContext(model=model)
    schedule_calls = []

    def schedule(i):
        schedule_calls.append(i)
        for group in optimizer.param_groups:
            group["lr"] = 0.01 / (1 + i)
        return 0.01 / (1 + i)

    def compute_loss(batch):
        x, target = batch
        if seen is not None:
            seen.append(x)
        y = model(x)  # dropout: draws from the global RNG, which a resume must restore
        loss = F.mse_loss(y, target) * (float("nan") if nan_at is not None and len(schedule_calls) > nan_at else 1)
        return BatchLoss(loss, {"y": y}, batch, samples=len(x), forward_macs=100 * len(x))

    result = train_loop(batches=_batches(), compute_loss=compute_loss, method=method, ctx=ctx, model=model,
                        optimizer=optimizer, settings=settings, device=torch.device("cpu"),
                        total_iterations=ITERATIONS, name="toy", where="toy step 'x'", failure_note="nothing written",
                        schedule=schedule, resume_path=tmp_path / "resume.pt", fingerprint="toy",
                        save_state=save_state)
    return model, method, ctx, result, schedule_calls


class Killed(Exception):
    pass


def test_a_resumed_loop_skips_exactly_the_trained_batches_and_ends_as_an_uninterrupted_one(tmp_path, capfd):
    from ticlip_core.engine.resume import save_resume_state

    full_model, full_method, full_ctx, full, _ = _train(tmp_path / "full")
    assert full.iterations == ITERATIONS and full.samples == 32 and full.resumed_from == 0
    assert full.macs(full_ctx.extra_macs) == 3 * 100 * 32 + 10 * ITERATIONS

    def save_then_die(path, state):
        save_resume_state(path, state)
        raise Killed  # the job is killed right after its first resumable state (iteration 3)

    with pytest.raises(Killed):
        _train(tmp_path / "cut", save_state=save_then_die)
    all_batches = [x for x, _ in _batches()]
    seen = []
    model, method, ctx, resumed, schedule_calls = _train(tmp_path / "cut", seen=seen)
    assert resumed.resumed_from == 3 and schedule_calls == list(range(3, ITERATIONS))
    assert len(seen) == ITERATIONS - 3 and all(torch.equal(a, b) for a, b in zip(seen, all_batches[3:]))
    assert "resuming toy from iteration 3" in capfd.readouterr().err
    a, b = full_model.state_dict(), model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(full_method.generator.get_state(), method.generator.get_state())
    assert ctx.info == full_ctx.info == {"calls": ITERATIONS} and ctx.extra_macs == full_ctx.extra_macs
    assert resumed.samples == full.samples and resumed.forward_macs == full.forward_macs
    drop = [{k: v for k, v in r.items() if k != "samples_per_s"} for r in (full.rows + resumed.rows)]
    assert drop[:len(full.rows)] == drop[len(full.rows):] and resumed.loss == full.loss


def test_progress_lines_every_log_every_iterations_and_at_the_last(tmp_path, capfd):
    _, _, _, result, _ = _train(tmp_path, settings={**SETTINGS, "log_every": 3, "resume_every": 0})
    assert [r["iteration"] for r in result.rows] == [3, 6, 8]
    lines = [line for line in capfd.readouterr().err.splitlines() if line.startswith("toy: iteration")]
    assert [line.split(",")[0] for line in lines] == ["toy: iteration 3/8", "toy: iteration 6/8", "toy: iteration 8/8"]
    assert all("loss" in line and "lr" in line and "samples/s" in line for line in lines)
    assert not (tmp_path / "resume.pt").exists()  # resume_every 0: no state saved


def test_a_nan_loss_raises_naming_the_step_and_the_iteration(tmp_path):
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss \(nan\) at toy step 'x', iteration 4; nothing"):
        _train(tmp_path, nan_at=4, settings={**SETTINGS, "resume_every": 0})
