"""End to end: the Snakemake workflow on the micro config, interrupted, resumed, then idle."""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import planned_jobs

ROOT = Path(__file__).resolve().parents[1]
METHODS = ["oracle", "cumulative_all", "cumulative_exp", "cumulative_equal", "sequential", "restart", "lwf",
           "patching"]
ABLATION = ["cumulative_all", "cumulative_all@warmup", "cumulative_all@cosine_max_lr"]
STEPS = ["2014", "2015"]
# The micro config on two of its three steps: every job costs seconds of imports (torch,
# open_clip) before any work, and two steps already exercise every dependency between steps.
TWO_STEPS = ROOT / "tests/data/micro_two_steps.yaml"


def snakemake(workdir, *extra):
    return [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir),
            "--configfile", str(ROOT / "configs/micro.yaml"), str(TWO_STEPS), "--cores", "2", *extra]


def finished_checkpoints(log: str, work: Path) -> list[Path]:
    """Checkpoints whose job Snakemake reported finished (a file on disk may still be incomplete)."""
    output_of, current = {}, None
    for line in log.splitlines():
        if m := re.search(r"output: (\S+/model\.pt)", line):
            current = m.group(1).rstrip(",")
        elif (m := re.match(r"\s+jobid: (\d+)", line)) and current:
            output_of[m.group(1)], current = current, None
    finished = re.findall(r"Finished jobid: (\d+)", log)
    return [work / output_of[j] for j in finished if j in output_of]


@pytest.fixture(scope="module")
def micro_run(tmp_path_factory):
    """Start the micro study, interrupt it once two training jobs have finished, then resume it."""
    work = tmp_path_factory.mktemp("micro")
    with open(work / "first_run.log", "w") as out:
        first = subprocess.Popen(snakemake(work), stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                 env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline, finished = time.time() + 240, []
    while time.time() < deadline and len(finished) < 2 and first.poll() is None:
        time.sleep(0.5)
        finished = finished_checkpoints((work / "first_run.log").read_text(), work)
    os.killpg(first.pid, signal.SIGINT)  # like Ctrl-C in the terminal
    try:
        code = first.wait(timeout=30)
    except subprocess.TimeoutExpired:  # a job ignoring Ctrl-C: kill everything, as a crash would
        os.killpg(first.pid, signal.SIGKILL)
        code = first.wait(timeout=60)
        subprocess.run(snakemake(work, "--unlock"), check=True, capture_output=True, timeout=120)
    assert code != 0, "the first run finished before it could be interrupted"
    done_before = {p: p.stat().st_mtime_ns for p in finished}
    resumed = subprocess.run(snakemake(work), capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    return work, done_before


def test_interrupted_run_resumes_without_redoing_finished_steps(micro_run):
    work, done_before = micro_run
    assert done_before, "the first run was interrupted before any checkpoint was written"
    for path, mtime in done_before.items():
        assert path.stat().st_mtime_ns == mtime, f"{path} was retrained after the restart"


def test_table_has_every_method_with_finite_values(micro_run):
    work, _ = micro_run
    table = pd.read_csv(work / "results/tic/table2.csv")
    assert list(table["Method"]) == METHODS
    numeric = table.drop(columns=["Method"])
    assert numeric.notna().all().all() and (numeric.abs() < float("inf")).all().all()
    # Oracle trains t x C at step t: 1 + 2 = 3 budgets; the others 2 budgets of 192 samples
    seen = dict(zip(table["Method"], table["Samples seen"]))
    assert seen == {m: (3 if m == "oracle" else 2) * 192 for m in METHODS}
    ratio = dict(zip(table["Method"], table["Compute / budget"]))
    assert ratio["oracle"] == pytest.approx(1.5)  # 3 budgets against 2
    for m in ("cumulative_all", "cumulative_exp", "cumulative_equal", "sequential", "restart"):
        assert ratio[m] == pytest.approx(1.0)
    # LwF's teacher forward at step 2 costs a third of the step's training (forward + backward):
    # (3 + 4) / 6 forward passes per sample; Patching's alpha search adds evaluation passes
    assert ratio["lwf"] == pytest.approx(7 / 6, rel=1e-3) and ratio["patching"] > 1.0
    for ext in ("md", "tex"):
        assert "cumulative" in (work / f"results/tic/table2.{ext}").read_text()
    assert "lwf\u2020" in (work / "results/tic/table2.md").read_text()


def test_lr_ablation_and_compute_figure(micro_run):
    work, _ = micro_run
    ablation = pd.read_csv(work / "results/tic/lr_ablation.csv")
    assert list(ablation["Method"]) == ABLATION
    assert list(ablation["Warm-up on later steps"]) == ["no", "yes", "no"]
    assert list(ablation["Max LR across steps"]) == ["constant", "constant", "cosine"]
    assert ablation.drop(columns=["Method", "Warm-up on later steps", "Max LR across steps"]).notna().all().all()
    assert (work / "results/tic/figures/compute_vs_performance.png").stat().st_size > 1000
    per_step = pd.read_csv(work / "results/tic/per_step.csv")
    oracle = per_step[per_step["method"] == "oracle"]
    assert oracle["samples_seen"].tolist() == [192, 2 * 192]  # t x C at step t
    assert (oracle["cumulative_gmacs"].diff().dropna() > 0).all()


def test_every_checkpoint_is_evaluated_on_every_step(micro_run):
    work, _ = micro_run
    rows = pd.read_csv(work / "results/tic/all_evals.csv", dtype={"train_step": str, "eval_step": str})
    for task in ("retrieval", "classification"):
        cells = rows[rows["task"] == task].groupby(["method", "train_step"])["eval_step"].nunique()
        assert len(cells) == len(METHODS) * len(STEPS) and (cells == len(STEPS)).all()
    assert {"static_objects", "static_colours", "static_retrieval"} <= set(rows["task"])
    report = pd.read_csv(work / "results/data/synthetic/report/data_report.csv").set_index("step")
    assert report.loc["total", "rows_in"] == report.loc["total", ["train", "val", "test"]].sum()
    for m in METHODS:
        for task in ("retrieval", "classification"):
            assert (work / f"results/tic/figures/matrix_{m}_{task}.png").stat().st_size > 1000


def test_every_rule_wrote_its_log_and_benchmark(micro_run):
    work, _ = micro_run
    bench = list((work / "results/benchmarks").rglob("*.tsv"))
    # 2 synthesis + bucket + data report + the shared first step and its 10 copies (8 methods +
    # 2 ablation variants) + 10 runs x the later steps, one evaluation per run, Table 2, the
    # ablation table and the figures, the bootstrap of the tables' cells and the findings
    assert len(bench) == 2 + 1 + 1 + 1 + 10 + 10 * (len(STEPS) - 1) + 10 + 3 + 2
    for tsv in bench:
        assert "max_rss" in tsv.read_text().splitlines()[0]


def test_findings_judge_every_tic_claim_and_say_the_studies_turned_off_are_not_evaluated(micro_run):
    work, _ = micro_run
    findings = pd.read_csv(work / "results/findings.csv")
    verdicts = findings.groupby(["study", "claim"])["claim_verdict"].first()
    assert set(verdicts["tic"]) <= {"holds", "contradicted", "inconclusive"} and len(verdicts["tic"]) == 4
    assert set(verdicts["clclip"]) == set(verdicts["memclip"]) == {"not evaluated"}
    assert "clclip.enabled: false" in (work / "results/findings.md").read_text()
    judged = findings[findings["study"] == "tic"]
    assert (judged["lo"] <= judged["difference"]).all() and (judged["difference"] <= judged["hi"]).all()
    intervals = pd.read_csv(work / "results/tic/uncertainty/intervals.csv")
    scores = intervals[intervals["column"].isin(["Static avg", "Retrieval ID"])]
    assert (scores["boot_hi"] > scores["boot_lo"]).all()  # test-sample noise on every score cell
    assert (scores["boot_lo"] <= scores["estimate"]).all() and (scores["estimate"] <= scores["boot_hi"]).all()
    compute = intervals[intervals["column"] == "Compute (GMACs)"]
    assert (compute["boot_lo"] == compute["boot_hi"]).all()  # not from test samples: no interval
    table = pd.read_csv(work / "results/tic/table2.csv")
    assert not any(c.endswith("±95%") for c in table.columns)  # one seed: no seeds' interval


def test_second_run_does_nothing(micro_run):
    work, _ = micro_run
    res = subprocess.run(snakemake(work, "--dry-run"), capture_output=True, text=True, timeout=120)
    assert res.returncode == 0
    assert "Nothing to be done" in res.stdout + res.stderr


# Provenance: each job reads only the config subset its rule passes as a param, so an edit reruns
# exactly the jobs whose outputs it can change (10 runs: 8 methods + 2 LR-ablation variants).
TABLES = {"tic_table": 1, "lr_ablation_table": 1, "tic_figures": 1, "tic_uncertainty": 1, "findings": 1}
EDITS = {
    "train.lr": ({"train": {"lr": 0.001}}, {"train_first_step": 1, "share_first_step": 10,
                                           "train_step": 10 * (len(STEPS) - 1), "evaluate_run": 10, **TABLES}),
    # LwF's first step has no teacher: it stays the shared one
    "methods.lwf.beta": ({"methods": {"lwf": {"beta": 0.5}}},
                         {"train_step": len(STEPS) - 1, "evaluate_run": 1, "tic_table": 1, "tic_figures": 1,
                          "tic_uncertainty": 1, "findings": 1}),
    # Patching's alpha search (steps after the first) reads the pool size too
    "eval.retrieval_pool_size": ({"eval": {"retrieval_pool_size": 16}},
                                 {"train_step": len(STEPS) - 1, "evaluate_run": 10, **TABLES}),
    # continuing steps only: not the first step, nor Oracle's and Restart's fresh initialisations
    "train.continue_lr": ({"train": {"continue_lr": 0.0005}},
                          {"train_step": 8 * (len(STEPS) - 1), "evaluate_run": 8, **TABLES}),
    # the first step, and what continues from it; Oracle's and Restart's later steps do not
    "train.first_step_budget_samples": ({"train": {"first_step_budget_samples": 200}},
                                        {"train_first_step": 1, "share_first_step": 10,
                                         "train_step": 8 * (len(STEPS) - 1), "evaluate_run": 10, **TABLES}),
    # the bootstrap: only the intervals and the verdicts
    "uncertainty.draws": ({"uncertainty": {"draws": 50}}, {"tic_uncertainty": 1, "findings": 1}),
    # a second replicate: that seed's own chain of jobs, then the tables; seed 0's are reused
    "replicates": ({"replicates": [0, 1]}, {"train_first_step": 1, "share_first_step": 10,
                                            "train_step": 10 * (len(STEPS) - 1), "evaluate_run": 10, **TABLES}),
    "resources.evaluate.runtime": ({"resources": {"evaluate": {"runtime": 90}}}, {}),  # read by no job
}


@pytest.fixture(scope="module")
def planned_after_edits(micro_run, tmp_path_factory):
    work, _ = micro_run
    return planned_jobs(snakemake(work), {k: overlay for k, (overlay, _) in EDITS.items()},
                        tmp_path_factory.mktemp("edits"))


@pytest.mark.parametrize("key", EDITS)
def test_a_config_edit_reruns_exactly_the_jobs_that_read_it(planned_after_edits, key):
    assert planned_after_edits[key] == EDITS[key][1]
