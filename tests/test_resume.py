"""A training job killed with SIGKILL mid-step resumes from its last saved state, and its final
weights equal those of an uninterrupted run."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]

_SCRIPT = """
import json, sys
sys.path.insert(0, {tests!r})
from conftest import micro_config
from ticlip_core.data.bucketing import step_shards
from ticlip_core.train import train_step
cfg = micro_config(budget_samples=640, batch_size=16, resume_every=5, log_every=5)
steps = {steps!r}
train_step(cfg, method_name="lwf", step="2015", init_checkpoint={init!r},
           shards_by_step={{s: step_shards(steps, s, "train") for s in ("2014", "2015")}},
           out_model={out!r} + "/model.pt", out_log={out!r} + "/train_log.csv", out_compute={out!r} + "/compute.json")
"""


def _start(tiny_world, out: Path, init: Path):
    out.mkdir(parents=True, exist_ok=True)
    code = _SCRIPT.format(tests=str(ROOT / "tests"), steps=str(tiny_world / "steps"), out=str(out), init=str(init))
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def test_sigkilled_training_resumes_to_the_same_weights(tiny_world, tmp_path):
    from conftest import micro_config
    from ticlip_core.models import create_model, save_checkpoint

    init = tmp_path / "init.pt"  # LwF at a second step: a teacher, and extra MACs to carry over
    model, *_ = create_model(micro_config()["model"]["name"], None, seed=3)
    save_checkpoint(model.state_dict(), init)

    whole = _start(tiny_world, tmp_path / "whole", init)  # runs alongside the one that is killed
    killed = _start(tiny_world, tmp_path / "killed", init)
    resume = tmp_path / "killed" / "resume.pt"
    deadline = time.time() + 300
    while not resume.exists() and killed.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.kill(killed.pid, signal.SIGKILL)
    assert killed.wait(timeout=30) == -signal.SIGKILL
    assert not (tmp_path / "killed" / "model.pt").exists()  # killed mid-step: no checkpoint yet
    saved_at = torch.load(resume, weights_only=True)["iteration"]
    assert 0 < saved_at < 40

    assert whole.wait(timeout=300) == 0, whole.stderr.read()[-3000:]
    again = _start(tiny_world, tmp_path / "killed", init)
    assert again.wait(timeout=300) == 0, again.stderr.read()[-3000:]
    assert f"from iteration {saved_at}" in again.stderr.read()
    assert not resume.exists()  # removed once the step's checkpoint is written

    a = torch.load(tmp_path / "whole" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "killed" / "model.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    log_a = pd.read_csv(tmp_path / "whole" / "train_log.csv")
    log_b = pd.read_csv(tmp_path / "killed" / "train_log.csv")
    assert list(log_a["iteration"]) == list(log_b["iteration"]) == list(range(5, 45, 5))
    assert (log_a["loss"] == log_b["loss"]).all()
    ca, cb = (json.loads((tmp_path / d / "compute.json").read_text()) for d in ("whole", "killed"))
    assert ca["macs"] == cb["macs"] and ca["extra_macs"] == cb["extra_macs"] > 0


def test_a_state_from_another_configuration_is_ignored(tmp_path):
    from ticlip_core.train import load_resume_state, save_resume_state

    path = tmp_path / "resume.pt"
    save_resume_state(path, {"fingerprint": "run a", "iteration": 3})
    assert load_resume_state(path, "run a")["iteration"] == 3
    assert load_resume_state(path, "run b") is None
    assert load_resume_state(tmp_path / "none.pt", "run a") is None
