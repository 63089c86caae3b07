"""Fault: kill -9 mid-step, of the training job alone and of Snakemake with its job. Each time,
rerunning the same command resumes the step from its last saved state, and the final weights,
log and compute record equal those of an uninterrupted run."""
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

ROOT = Path(__file__).resolve().parents[2]
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
MODELS = "results/tic/seed0/models/lwf"
TARGET = f"{MODELS}/2015/model.pt"
JOB_LOG = "results/logs/tic/seed0/train/lwf/2015.log"


def _snakemake(work: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(work),
            "--configfile", str(ROOT / "configs/micro.yaml"), str(work.parent / "subset.yaml"), "--cores", "1",
            *extra]


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Linux /proc)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                kids = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            out += kids
            todo += kids
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _start_and_kill_when_resumable(work: Path, log: Path, *, job_only: bool, extra: tuple = ()) -> int:
    """Start the target, wait until the second step has saved a resumable state, then SIGKILL the
    training job (``job_only``) or Snakemake with everything it started. Returns the state's iteration."""
    resume = work / MODELS / "2015/resume.pt"
    resume.unlink(missing_ok=True)
    with open(log, "w") as out:
        proc = subprocess.Popen(_snakemake(work, *extra, TARGET), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    deadline = time.time() + 400
    while not resume.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert resume.exists(), "no resumable state was saved:\n" + log.read_text()[-3000:]
    if job_only:
        jobs = [p for p in _descendants(proc.pid) if "train_step.py" in _cmdline(p)]
        assert jobs, "the training job's process was not found"
        for p in jobs:
            os.kill(p, signal.SIGKILL)
        assert proc.wait(timeout=120) != 0  # Snakemake sees the job fail and stops
    else:
        os.killpg(proc.pid, signal.SIGKILL)  # Snakemake and its job die at once, as on a crashed node
        proc.wait(timeout=30)
    assert not (work / TARGET).exists()  # killed mid-step: no checkpoint
    saved_at = torch.load(resume, weights_only=True)["iteration"]
    assert 0 < saved_at < 40
    return saved_at


def _rerun_resumes(work: Path, saved_at: int) -> None:
    again = subprocess.run(_snakemake(work, TARGET), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "rule train_step" in again.stdout + again.stderr  # the rule itself was rerun
    job_log = (work / JOB_LOG).read_text()
    assert f"resuming lwf at '2015' from iteration {saved_at}" in job_log, job_log[-3000:]
    assert not (work / MODELS / "2015/resume.pt").exists()  # removed once the checkpoint is written


def _same_step(a: Path, b: Path) -> None:
    wa, wb = (torch.load(d / "model.pt", weights_only=True) for d in (a, b))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    log_a, log_b = (pd.read_csv(d / "train_log.csv") for d in (a, b))
    assert list(log_a["iteration"]) == list(log_b["iteration"]) == list(range(5, 45, 5))
    assert (log_a["loss"] == log_b["loss"]).all()
    ca, cb = (json.loads((d / "compute.json").read_text()) for d in (a, b))
    assert ca["macs"] == cb["macs"] and ca["extra_macs"] == cb["extra_macs"] > 0


def test_sigkill_of_the_job_or_of_snakemake_mid_step_resumes_to_the_same_weights(tmp_path):
    (tmp_path / "subset.yaml").write_text(SUBSET)
    work = tmp_path / "work"
    work.mkdir()

    # 1. the training job alone is killed; Snakemake fails the job; the same command resumes it
    saved_at = _start_and_kill_when_resumable(work, tmp_path / "job_killed.log", job_only=True)
    first_step = (work / MODELS / "2014/model.pt").stat().st_mtime_ns
    _rerun_resumes(work, saved_at)
    assert (work / MODELS / "2014/model.pt").stat().st_mtime_ns == first_step  # the finished step is kept
    after_job_kill = tmp_path / "after_job_kill"
    shutil.copytree(work / MODELS / "2015", after_job_kill)

    # 2. Snakemake and its job are killed (a crashed node): unlock, then the same command
    saved_at = _start_and_kill_when_resumable(work, tmp_path / "all_killed.log", job_only=False, extra=("--force",))
    subprocess.run(_snakemake(work, "--unlock"), check=True, capture_output=True, timeout=120)
    _rerun_resumes(work, saved_at)
    after_crash = tmp_path / "after_crash"
    shutil.copytree(work / MODELS / "2015", after_crash)

    # the reference: the same job run again from scratch, uninterrupted
    forced = subprocess.run(_snakemake(work, "--force", TARGET), capture_output=True, text=True, timeout=600)
    assert forced.returncode == 0, forced.stdout[-3000:] + forced.stderr[-3000:]
    assert "resuming" not in (work / JOB_LOG).read_text()
    for resumed in (after_job_kill, after_crash):
        _same_step(work / MODELS / "2015", resumed)
