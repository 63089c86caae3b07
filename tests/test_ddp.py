"""Data-parallel training under torchrun (two gloo processes on the CPU) against one process."""
from pathlib import Path

import pytest
import torch

from conftest import micro_config
from ticlip_core.data.bucketing import step_shards
from ticlip_core.engine.launch import run_training

ROOT = Path(__file__).resolve().parents[1]
# Tolerance. The all-reduce sums gradients in another order than one process does, and Adam's
# first steps move a parameter by about lr * sign(gradient), so the few parameters whose
# gradient is nearly zero can take rounding-sized differences to lr-sized ones. So the test
# bounds the distance between the runs relative to the distance the one-process run trained,
# and the share of parameters that differ by more than 1e-4.
REL_TOLERANCE, ELEMENT_TOLERANCE, ELEMENT_SHARE = 0.05, 1e-4, 1e-3


def _job(tiny_world, out: Path, **train):
    cfg = micro_config(budget_samples=96, batch_size=16, warmup_iterations=2, **train)
    out.mkdir(parents=True, exist_ok=True)
    return dict(config=cfg, method_name="sequential", step="2014", init_checkpoint=None,
                shards_by_step={"2014": step_shards(tiny_world / "steps", "2014", "train")},
                out_model=str(out / "model.pt"), out_log=str(out / "train_log.csv"),
                out_compute=str(out / "compute.json"))


def _vector(state: dict) -> torch.Tensor:
    return torch.cat([v.flatten().double() for k, v in sorted(state.items())])


def test_two_processes_match_one_with_the_same_global_batch(tiny_world, tmp_path):
    from ticlip_core.models import create_model
    from ticlip_core.engine.seeds import derived_seed

    one = _job(tiny_world, tmp_path / "one", data_split="samples")
    # the weights both runs start from (train_step seeds each step's initialisation alike)
    start, *_ = create_model(one["config"]["model"]["name"], None, seed=derived_seed(one["config"]["seed"], "2014"))
    torch.save(start.state_dict(), tmp_path / "one" / "init.pt")
    two = _job(tiny_world, tmp_path / "two", data_split="samples")
    run_training(one, 1, tmp_path / "one" / "job.json")
    compute = run_training(two, 2, tmp_path / "two" / "job.json")
    assert compute["processes"] == 2 and compute["samples_seen"] == 96 and compute["iterations"] == 6
    init = _vector(torch.load(tmp_path / "one" / "init.pt", weights_only=True))
    one_v = _vector(torch.load(tmp_path / "one" / "model.pt", weights_only=True))
    two_v = _vector(torch.load(tmp_path / "two" / "model.pt", weights_only=True))
    rel = ((one_v - two_v).norm() / (one_v - init).norm()).item()
    share = ((one_v - two_v).abs() > ELEMENT_TOLERANCE).float().mean().item()
    assert rel < REL_TOLERANCE and share < ELEMENT_SHARE, (rel, share)
    # the bound discriminates: two ranks reading their own shards see other batches
    shards = _job(tiny_world, tmp_path / "shards", data_split="shards")
    run_training(shards, 2, tmp_path / "shards" / "job.json")
    other = _vector(torch.load(tmp_path / "shards" / "model.pt", weights_only=True))
    assert ((one_v - other).norm() / (one_v - init).norm()).item() > 4 * REL_TOLERANCE
    assert not (tmp_path / "two" / "job.json").exists()


def test_an_uneven_split_is_refused_before_any_process_starts(tiny_world, tmp_path, monkeypatch):
    from ticlip_core.tic.train import train_step

    job = _job(tiny_world, tmp_path / "odd")
    job["config"]["train"]["budget_samples"] = 95
    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun would set it
    with pytest.raises(ValueError, match="a budget of 95 samples cannot be split evenly across 2 processes"):
        train_step(**job)
    job["config"]["train"].update(budget_samples=96, batch_size=15)
    with pytest.raises(ValueError, match="train.batch_size 15 is not divisible by the 2 processes"):
        train_step(**job)
