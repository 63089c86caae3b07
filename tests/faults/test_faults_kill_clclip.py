"""Fault: kill -9 of a CL-CLIP method job (every variant x beta x session in one process) after
at least one session finished and while a session is in progress. Rerunning the same command
resumes it (finished sessions from the job's work folder, the session in progress from its
in-session state), and its rows, chosen values and compute records equal an uninterrupted run's."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from test_faults_kill import _cmdline, _descendants

ROOT = Path(__file__).resolve().parents[2]
# VR-LwF: its pseudo-sentence generator must carry over a resume. Two betas x (OST: 1 session
# of 4 iterations, MST: 2 sessions of 2), an in-session state after every iteration.
SUBSET = """\
clclip:
  enabled: true
  methods: [vr_lwf]
  variants: [wm]
  base: {budget_samples: 128}
  train: {resume_every: 1, log_every: 1}
"""
RUNS = "results/clclip/seed0/runs"
TARGET = f"{RUNS}/vr_lwf.csv"
WORK = f"{RUNS}/vr_lwf.work"
JOB_LOG = "results/logs/clclip/seed0/runs/vr_lwf.log"


def _snakemake(work: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(work),
            "--configfile", str(ROOT / "configs/micro.yaml"), str(work.parent / "subset.yaml"), "--cores", "2",
            *extra]


def _outputs(work: Path) -> tuple[pd.DataFrame, dict, list[dict]]:
    compute = json.loads((work / RUNS / "vr_lwf.compute.json").read_text())
    for record in compute:
        record.pop("seconds")
    return (pd.read_csv(work / TARGET), json.loads((work / RUNS / "vr_lwf.json").read_text()), compute)


def test_sigkill_of_a_clclip_method_job_resumes_to_the_same_rows(tmp_path):
    (tmp_path / "subset.yaml").write_text(SUBSET)
    work = tmp_path / "work"
    work.mkdir()
    with open(tmp_path / "killed.log", "w") as out:
        proc = subprocess.Popen(_snakemake(work, TARGET), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    folder, deadline = work / WORK, time.time() + 300
    # a finished session is kept (a chain file) and the next session has saved an in-session state
    while not (list(folder.glob("chain_*.pt")) and (folder / "session.resume.pt").exists()):
        assert proc.poll() is None and time.time() < deadline, (tmp_path / "killed.log").read_text()[-3000:]
        time.sleep(0.01)
    jobs = [p for p in _descendants(proc.pid) if "clclip_run.py" in _cmdline(p)]
    assert jobs, "the CL-CLIP job's process was not found"
    for p in jobs:
        os.kill(p, signal.SIGKILL)
    assert proc.wait(timeout=120) != 0
    assert not (work / TARGET).exists() and list(folder.glob("chain_*.pt"))

    again = subprocess.run(_snakemake(work, TARGET), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    job_log = (work / JOB_LOG).read_text()
    assert "finished session(s)" in job_log and "resuming vr_lwf-" in job_log, job_log[-3000:]
    assert not folder.exists()  # removed once the outputs are written
    resumed = _outputs(work)

    forced = subprocess.run(_snakemake(work, "--force", TARGET), capture_output=True, text=True, timeout=300)
    assert forced.returncode == 0, forced.stdout[-3000:] + forced.stderr[-3000:]
    assert "resuming" not in (work / JOB_LOG).read_text()
    rows, chosen, compute = _outputs(work)
    assert rows.equals(resumed[0]) and chosen == resumed[1] and compute == resumed[2]
    assert len(compute) == 2 and all(r["macs"] > 0 and r["search_macs"] > r["macs"] for r in compute)
