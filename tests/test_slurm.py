"""A small study on a real SLURM cluster (`snakemake --profile profiles/slurm`): every job is an
sbatch job asking what the config says, and the numbers equal those of a local run.

CI starts a one-node SLURM with .ci/start_slurm.sh; without sbatch or an idle node this skips.
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# One method over two steps keeps it short; CPU jobs only (the CI node has no GPU) and small
# enough for a 2-core runner. Synthesis asks 1 CPU so that both synthesis jobs run at once.
SUBSET = """\
data:
  synthetic: {years: [2014, 2015]}
tic:
  steps: ["2014", "2015"]
  methods: [sequential]
  lr_ablation: {method: null}
resources:
  train: {gpu: 0, mem_mb: 1000, runtime: 10}
  evaluate: {gpu: 0, mem_mb: 1000, runtime: 10}
  data: {cpus_per_task: 1, mem_mb: 1000, runtime: 10}
"""
RUNS, STEPS = ["sequential"], ["2014", "2015"]
TARGET = "results/tic/table2.csv"  # the tables need every evaluation, hence every training step
COMPARED = ["results/tic/table2.csv", "results/tic/per_step.csv", "results/tic/all_evals.csv",
            *[f"results/tic/seed0/evals/{r}/{s}.csv" for r in RUNS for s in STEPS]]
# Test-only plugin settings: no accounting on the CI cluster, so job status from squeue (sacct
# fails there); quick status checks; keep the logs of successful jobs to inspect them.
SLURM_TEST_ARGS = ["--slurm-status-command", "squeue", "--slurm-no-account", "--slurm-keep-successful-logs",
                   "--slurm-init-seconds-before-status-checks", "5", "--seconds-between-status-checks", "5"]


def _slurm_missing() -> str | None:
    """Why SLURM cannot run jobs here, or None."""
    for tool in ("sbatch", "sinfo", "squeue", "scontrol"):
        if shutil.which(tool) is None:
            return f"no '{tool}' on PATH: no SLURM here (CI starts one with .ci/start_slurm.sh)"
    # compact node states: "idle" and "mix" can take jobs; "drain", "down", "idle*" (not responding)... cannot
    res = subprocess.run(["sinfo", "-h", "-N", "-o", "%n %t"], capture_output=True, text=True, timeout=30)
    states = res.stdout.split()[1::2]
    if res.returncode != 0 or not {"idle", "mix"} & set(states):
        return f"sinfo shows no idle SLURM node ({(res.stdout + res.stderr).strip() or 'no nodes'})"
    return None


def _snakemake(work: Path, configfile: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(work),
            "--configfile", str(ROOT / "configs/micro.yaml"), str(configfile), *extra, TARGET]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same study run under SLURM and locally, side by side (the SLURM run mostly waits for status checks)."""
    if reason := _slurm_missing():
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("slurm")
    config = root / "subset.yaml"
    config.write_text(SUBSET)
    procs = {}
    for name, extra in [("slurm", ["--profile", str(ROOT / "profiles/slurm"), *SLURM_TEST_ARGS]),
                        ("local", ["--cores", "2"])]:
        (root / name).mkdir()
        with open(root / f"{name}.log", "w") as out:
            # the local run at the lowest CPU priority: it fills the SLURM run's waits without slowing its jobs
            procs[name] = subprocess.Popen(_snakemake(root / name, config, *extra), cwd=root / name, stdout=out,
                                           stderr=subprocess.STDOUT, start_new_session=True,
                                           preexec_fn=(lambda: os.nice(19)) if name == "local" else None)
    deadline = time.monotonic() + 420
    try:
        for proc in procs.values():
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        pass  # stopped below; the run fails the check after
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)  # like Ctrl-C: Snakemake cancels its SLURM jobs (scancel)
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=30)
    for name, proc in procs.items():
        assert proc.returncode == 0, f"{name} run failed or took over 7 minutes:\n" + \
            (root / f"{name}.log").read_text()[-4000:]
    return root, (root / "slurm.log").read_text()


def _jobs(log: str) -> dict[str, str]:
    """Snakemake job id -> rule, of every job the run scheduled."""
    return dict((jobid, rule) for rule, jobid in re.findall(r"^(?:local)?rule (\w+):\n(?:    .*\n)*?    jobid: (\d+)",
                                                             log, re.M))


def _submitted(log: str) -> dict[str, tuple[str, Path]]:
    """Snakemake job id -> (SLURM job id, SLURM log) of every job submitted with sbatch."""
    return {job: (slurm, Path(path)) for job, slurm, path in
            re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+) \(log: (\S+)\)\.", log)}


def test_every_job_ran_as_a_slurm_job(runs):
    root, log = runs
    jobs, submitted = _jobs(log), _submitted(log)
    rules = sorted(jobs[j] for j in submitted)
    # synthesis of world and static set, bucketing, 2 steps of training, the evaluation, the table
    assert rules == sorted(["synthesize_world", "synthesize_static", "bucket", *["train_step"] * 2,
                            "evaluate_run", "tic_table"]), log[-3000:]
    assert set(jobs) - set(submitted) == set(), "jobs run outside SLURM"
    for job, (slurm_id, slurm_log) in submitted.items():
        assert slurm_log.name == f"{slurm_id}.log" and f"rule_{jobs[job]}" in slurm_log.parts
        text = slurm_log.read_text()
        assert f"rule {jobs[job]}:" in text and "Finished jobid" in text, text[-2000:]
        # the job's Snakemake is this environment's (the plugin submits this interpreter)
        assert re.search(rf"Command: {re.escape(sys.prefix)}/\S*snakemake", text), text[:2000]
    run_id = re.search(r"SLURM run ID: (\S+)", log).group(1)
    states = subprocess.run(["squeue", "--states=all", "--noheader", "--name", run_id, "--format=%i|%T"],
                            capture_output=True, text=True, check=True).stdout.split()
    assert sorted(states) == sorted(f"{slurm_id}|COMPLETED" for slurm_id, _ in submitted.values())


def test_jobs_asked_slurm_for_the_configured_resources(runs):
    _, log = runs
    jobs = _jobs(log)
    asked = {}
    for job, (slurm_id, _) in _submitted(log).items():
        info = subprocess.run(["scontrol", "show", "job", slurm_id], capture_output=True, text=True,
                              check=True).stdout
        fields = dict(re.findall(r"(\w+)=(\S+)", info))
        asked.setdefault(jobs[job], set()).add((fields["TimeLimit"], fields["MinMemoryNode"], fields["NumCPUs"]))
    # config resources.train / .evaluate / .data (the test's), and the profile's default-resources for the table
    assert asked == {"train_step": {("00:10:00", "1000M", "1")}, "evaluate_run": {("00:10:00", "1000M", "1")},
                     "synthesize_world": {("00:10:00", "1000M", "1")}, "synthesize_static": {("00:10:00", "1000M", "1")},
                     "bucket": {("00:10:00", "1000M", "1")}, "tic_table": {("00:30:00", "2000M", "1")}}


def test_slurm_results_equal_the_local_run(runs):
    root, _ = runs
    for rel in COMPARED:
        on_slurm, local = root / "slurm" / rel, root / "local" / rel
        assert on_slurm.stat().st_size > 0, rel
        # training and evaluation are deterministic on CPU: every number must be the same
        assert on_slurm.read_bytes() == local.read_bytes(), f"{rel} differs between the SLURM and the local run"
