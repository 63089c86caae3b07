"""train.carry_optimizer: a continuing step starts from the AdamW state its previous step saved;
a first or freshly initialised step starts a fresh one; a killed continuing step resumes to the
weights of an uninterrupted one."""
import pytest
import torch

import ticlip_core.tic.train as tic_train
from conftest import micro_config
from ticlip_core.data.bucketing import step_shards
from ticlip_core.engine.contrastive import adamw_cosine, load_optimizer_state, read_optimizer_state, save_optimizer_state
from ticlip_core.engine.method import Method
from ticlip_core.registry import unregister
from ticlip_core.tic.methods import register

STEPS = ("2014", "2015")


@pytest.fixture
def shards(tiny_world):
    return {s: step_shards(tiny_world / "steps", s, "train") for s in STEPS}


@pytest.fixture
def starts(monkeypatch):
    """The optimizer state each ``train_step`` call hands its loop, and the one it saves at its
    end, in call order."""
    seen = {"start": [], "end": []}
    loop, save = tic_train.train_loop, tic_train.save_optimizer_state

    def spy_loop(**kwargs):
        seen["start"].append(_copy(kwargs["optimizer"].state_dict()["state"]))
        return loop(**kwargs)

    def spy_save(optimizer, path):
        seen["end"].append(_copy(optimizer.state_dict()["state"]))
        return save(optimizer, path)

    monkeypatch.setattr(tic_train, "train_loop", spy_loop)
    monkeypatch.setattr(tic_train, "save_optimizer_state", spy_save)
    return seen


def _copy(state):
    return {i: {k: v.detach().clone() for k, v in s.items()} for i, s in state.items()}


def _same(a, b) -> bool:
    return a.keys() == b.keys() and all(
        a[i].keys() == b[i].keys() and all(torch.equal(a[i][k].cpu(), b[i][k].cpu()) for k in a[i]) for i in a)


def _step(cfg, tmp_path, shards, method, step, tag, init=None):
    return tic_train.train_step(
        cfg, method_name=method, step=step, shards_by_step=shards, init_checkpoint=init and str(tmp_path / f"{init}.pt"),
        init_optimizer=init and str(tmp_path / f"{init}.opt"), out_model=str(tmp_path / f"{tag}.pt"),
        out_log=str(tmp_path / f"{tag}.csv"), out_compute=str(tmp_path / f"{tag}.json"),
        out_optimizer=str(tmp_path / f"{tag}.opt"))


def test_a_continuing_step_starts_from_the_saved_state_and_a_fresh_one_does_not(shards, starts, tmp_path):
    cfg = micro_config(budget_samples=64, batch_size=16, carry_optimizer=True)
    first = _step(cfg, tmp_path, shards, "sequential", "2014", "s0")
    ended = starts["end"][0]
    assert starts["start"][0] == {} and not first["carried_optimizer"]  # the first step: a fresh AdamW
    assert ended and all(float(s["step"]) == 4 for s in ended.values())  # 64 / 16 updates
    assert _same(read_optimizer_state(tmp_path / "s0.opt")["state"], ended)  # written exactly ...
    packed = torch.load(tmp_path / "s0.opt", weights_only=True)["state"]
    assert any(isinstance(v, dict) for s in packed.values() for v in s.values())  # ... unused vocabulary rows left out

    carried = _step(cfg, tmp_path, shards, "sequential", "2015", "s1", init="s0")
    assert carried["carried_optimizer"] and _same(starts["start"][1], ended)  # starts where the last step ended
    # the carried state trains on: its step counts continue from the previous step's
    assert all(float(s["step"]) == 8 for s in read_optimizer_state(tmp_path / "s1.opt")["state"].values())

    restarted = _step(cfg, tmp_path, shards, "restart", "2015", "r1")  # a fresh initialisation
    assert starts["start"][2] == {} and not restarted["carried_optimizer"]

    cfg_off = micro_config(budget_samples=64, batch_size=16, carry_optimizer=False)
    fresh = _step(cfg_off, tmp_path, shards, "sequential", "2015", "f1", init="s0")
    assert starts["start"][3] == {} and not fresh["carried_optimizer"]
    weights = [torch.load(tmp_path / f"{t}.pt", weights_only=True) for t in ("s1", "f1")]
    assert any(not torch.equal(weights[0][k], weights[1][k]) for k in weights[0])  # carrying changes the step


def test_a_continuing_step_without_the_previous_state_or_with_a_foreign_one_fails_clearly(shards, tmp_path):
    cfg = micro_config(budget_samples=32, batch_size=16, carry_optimizer=True)
    _step(cfg, tmp_path, shards, "sequential", "2014", "s0")
    (tmp_path / "s0.opt").unlink()
    with pytest.raises(FileNotFoundError, match="s0.opt does not exist"):
        _step(cfg, tmp_path, shards, "sequential", "2015", "s1", init="s0")
    (tmp_path / "s0.opt").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="s0.opt is truncated or corrupt"):
        _step(cfg, tmp_path, shards, "sequential", "2015", "s1", init="s0")

    other = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    opt, _ = adamw_cosine(other, 1e-3, 0.1, 0, 1)
    other(torch.ones(2, 3)).sum().backward()
    opt.step()
    save_optimizer_state(opt, tmp_path / "foreign.opt")
    with pytest.raises(ValueError, match="foreign.opt holds parameter groups"):
        load_optimizer_state(torch.optim.AdamW([torch.nn.Parameter(torch.ones(3))]), tmp_path / "foreign.opt")
    bent = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.LayerNorm(5))
    with pytest.raises(ValueError, match="has shape"):
        load_optimizer_state(adamw_cosine(bent, 1e-3, 0.1, 0, 1)[0], tmp_path / "foreign.opt")


def test_a_killed_continuing_step_resumes_to_the_weights_of_an_uninterrupted_one(shards, tmp_path):
    @register
    class Killed(Method):
        """Test-only: Sequential whose step dies at its ``die_at``-th iteration (when set)."""
        name = "killed_test"
        study = "tic"
        warm_start = True
        calls, die_at = 0, None

        def extra_loss(self, ctx, batch, outputs):
            type(self).calls += 1
            if type(self).calls == type(self).die_at:
                raise KeyboardInterrupt("killed")
            return None

    try:
        cfg = micro_config(budget_samples=160, batch_size=16, carry_optimizer=True, resume_every=3, log_every=1)
        _step(cfg, tmp_path, shards, "killed_test", "2014", "s0")
        Killed.calls, Killed.die_at = 0, 7
        with pytest.raises(KeyboardInterrupt):
            _step(cfg, tmp_path, shards, "killed_test", "2015", "killed", init="s0")
        assert (tmp_path / "resume.pt").is_file() and not (tmp_path / "killed.pt").exists()
        assert torch.load(tmp_path / "resume.pt", weights_only=True)["iteration"] == 6
        _step(cfg, tmp_path, shards, "killed_test", "2015", "killed", init="s0")  # resumes at iteration 6
        assert not (tmp_path / "resume.pt").exists()
        Killed.die_at = None
        _step(cfg, tmp_path, shards, "killed_test", "2015", "whole", init="s0")  # uninterrupted
        a, b = (torch.load(tmp_path / f"{t}.pt", weights_only=True) for t in ("killed", "whole"))
        assert all(torch.equal(a[k], b[k]) for k in a)
        oa, ob = (read_optimizer_state(tmp_path / f"{t}.opt")["state"] for t in ("killed", "whole"))
        assert _same(oa, ob)
    finally:
        unregister("tic", "killed_test")
