"""Fault: two runs on one results folder from two working directories (Snakemake locks only its
working directory). The second is refused, naming the holder; a killed holder frees the folder."""
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_together

from ticlip_core.results_lock import LOCK_NAME, ResultsInUseError, hold_results_lock

ROOT = Path(__file__).resolve().parents[2]
HOLD = "import sys, time; from ticlip_core.results_lock import hold_results_lock; " \
       "hold_results_lock(sys.argv[1]); print('held', flush=True); time.sleep(300)"


@pytest.fixture
def holder(tmp_path):
    """Another process (a run elsewhere) holding ``tmp_path / 'results'``."""
    results = tmp_path / "results"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(results)], stdout=subprocess.PIPE, text=True,
                            cwd=ROOT)
    assert proc.stdout.readline().strip() == "held"
    yield results, proc
    proc.kill()
    proc.wait()


def test_a_held_results_folder_is_refused_naming_the_holder(holder):
    results, proc = holder
    with pytest.raises(ResultsInUseError, match=rf"in use by another ticlip run \(pid {proc.pid} on "):
        hold_results_lock(results)


def test_a_killed_holder_leaves_no_stale_lock(holder, tmp_path):
    results, proc = holder
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    again = subprocess.run([sys.executable, "-c", HOLD.replace("time.sleep(300)", "pass"), str(results)],
                           capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert again.returncode == 0 and "held" in again.stdout
    assert (results / LOCK_NAME).is_file()


def _snakemake(workdir: Path, results: Path, *extra: str) -> list[str]:
    workdir.mkdir()
    return [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir),
            "--configfile", str(ROOT / "configs/micro.yaml"), "--config", f"results={results}", "--cores", "1",
            *extra, "synthesize_static"]


def test_a_second_workflow_run_on_the_same_results_is_refused_before_any_job(holder, tmp_path):
    results, proc = holder
    done = run_together({"dry": _snakemake(tmp_path / "elsewhere_dry", results, "--dry-run"),
                         "run": _snakemake(tmp_path / "elsewhere", results)}, timeout=120)
    assert done["dry"][0] == 0, done["dry"][1][-2000:]  # planning reads nothing and writes nothing: allowed
    code, out = done["run"]
    assert code != 0 and f"results folder '{results}' is in use by another ticlip run" in out, out[-2000:]
    assert sorted(p.name for p in results.iterdir()) == [LOCK_NAME]  # the refused run wrote nothing
