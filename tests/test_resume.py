"""A training job killed with SIGKILL mid-step resumes, when its rule is rerun, from its last
saved state, and its final weights equal those of an uninterrupted run."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
# Two LwF steps: the killed one (the second) has a teacher whose extra MACs must carry over.
# 40 iterations of 16 samples, a resumable state every 5.
SUBSET = """\
data:
  synthetic: {years: [2014, 2015]}
tic:
  steps: ["2014", "2015"]
  methods: [lwf]
  lr_ablation: {method: null}
train: {budget_samples: 640, batch_size: 16, resume_every: 5, log_every: 5}
"""
MODELS = "results/tic/models/lwf"
TARGET = f"{MODELS}/2015/model.pt"


def _snakemake(work: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(work),
            "--configfile", str(ROOT / "configs/micro.yaml"), str(work.parent / "subset.yaml"), "--cores", "1",
            *extra]


def test_sigkilled_training_job_resumes_to_the_same_weights_when_the_rule_is_rerun(tmp_path):
    (tmp_path / "subset.yaml").write_text(SUBSET)
    work = tmp_path / "work"
    work.mkdir()
    with open(tmp_path / "killed.log", "w") as out:
        crashing = subprocess.Popen(_snakemake(work, TARGET), stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
    resume = work / MODELS / "2015/resume.pt"
    deadline = time.time() + 400
    while not resume.exists() and crashing.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert resume.exists(), "no resumable state was saved:\n" + (tmp_path / "killed.log").read_text()[-3000:]
    os.killpg(crashing.pid, signal.SIGKILL)  # Snakemake and its job die at once, as on a crashed node
    crashing.wait(timeout=30)
    assert not (work / TARGET).exists()  # killed mid-step: no checkpoint yet
    saved_at = torch.load(resume, weights_only=True)["iteration"]
    assert 0 < saved_at < 40
    first_step = (work / MODELS / "2014/model.pt").stat().st_mtime_ns

    # what the README says to do after a crash: unlock, then the same command (the workflow's
    # default profile sets rerun-incomplete)
    subprocess.run(_snakemake(work, "--unlock"), check=True, capture_output=True, timeout=120)
    again = subprocess.run(_snakemake(work, TARGET), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "rule train_step" in again.stdout + again.stderr  # the rule itself was rerun
    job_log = (work / "results/logs/tic/train/lwf/2015.log").read_text()
    assert f"resuming lwf at '2015' from iteration {saved_at}" in job_log, job_log[-3000:]
    assert (work / MODELS / "2014/model.pt").stat().st_mtime_ns == first_step  # the finished step is kept
    assert not resume.exists()  # removed once the step's checkpoint is written

    # the reference: the same job run again from scratch, uninterrupted
    resumed = tmp_path / "resumed"
    shutil.copytree(work / MODELS / "2015", resumed)
    forced = subprocess.run(_snakemake(work, "--force", TARGET), capture_output=True, text=True, timeout=600)
    assert forced.returncode == 0, forced.stdout[-3000:] + forced.stderr[-3000:]
    assert "resuming" not in (work / "results/logs/tic/train/lwf/2015.log").read_text()
    whole = work / MODELS / "2015"

    a = torch.load(whole / "model.pt", weights_only=True)
    b = torch.load(resumed / "model.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    log_a, log_b = (pd.read_csv(d / "train_log.csv") for d in (whole, resumed))
    assert list(log_a["iteration"]) == list(log_b["iteration"]) == list(range(5, 45, 5))
    assert (log_a["loss"] == log_b["loss"]).all()
    ca, cb = (json.loads((d / "compute.json").read_text()) for d in (whole, resumed))
    assert ca["macs"] == cb["macs"] and ca["extra_macs"] == cb["extra_macs"] > 0


def test_a_state_from_another_configuration_is_ignored(tmp_path):
    from ticlip_core.train import load_resume_state, save_resume_state

    path = tmp_path / "resume.pt"
    save_resume_state(path, {"fingerprint": "run a", "iteration": 3})
    assert load_resume_state(path, "run a")["iteration"] == 3
    assert load_resume_state(path, "run b") is None
    assert load_resume_state(tmp_path / "none.pt", "run a") is None
