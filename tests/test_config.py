"""The config is validated against its schema before any job runs."""
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "ticlip_core/schemas/config.schema.yaml"


def test_default_config_is_valid_and_defaults_are_filled():
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    validate(cfg, str(SCHEMA))
    assert cfg["results"] == "results"  # not in config.yaml: filled from the schema
    partial = {"train": {"lr": 0.01}}
    validate(partial, str(SCHEMA))
    assert partial["train"]["batch_size"] == 32
    assert partial["tic"]["methods"] == ["oracle", "cumulative_all", "cumulative_exp", "cumulative_equal",
                                         "sequential", "restart", "lwf", "patching"]
    assert partial["methods"]["patching"]["alpha_grid"] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert partial["tic"]["lr_ablation"]["method"] == "cumulative_all"
    # the schema's defaults are the embedded default config's values
    assert {k: partial[k] for k in ("tic", "methods")} == {k: cfg[k] for k in ("tic", "methods")}


def _dry_run(tmp_path, cfg_text):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(cfg_text)
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--configfile", str(cfg),
         "--directory", str(tmp_path), "--snakefile", str(ROOT / "Snakefile")],
        cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("cfg_text, expected", [
    ("train:\n  batch_size: lots\n", ["'lots' is not of type 'integer'", "batch_size"]),
    ("train:\n  bacth_size: 64\n", ["'bacth_size' was unexpected"]),
    ("tic:\n  methods: [oracle, not_a_method]\n", ["tic.methods: unknown TiC method(s) not_a_method"]),
    ("tic:\n  steps: ['2017', '2016']\n", ["'2016' overlaps or precedes '2017'"]),
    ("tic:\n  lr_ablation: {method: oracle}\n", ["tic.lr_ablation.method: 'oracle' initialises every step afresh"]),
    ("methods:\n  patching: {alpha_grid: [0.5, 1.5]}\n", ["1.5 is greater than the maximum of 1", "alpha_grid"]),
    ("train:\n  max_lr_decay: linear\n", ["'linear' is not one of ['constant', 'cosine']"]),
    ("data:\n  source: img2dataset\n", ["data.metadata: data.source img2dataset needs at least one metadata table"]),
    ("data:\n  source: img2dataset\n  metadata: [m.parquet]\n  preset: datacomp\n",
     ["preset 'datacomp' gives years by key, so set data.timestamp.key_to_year"]),
    ("data:\n  source: img2dataset\n  metadata: [m.parquet]\n  download: {resize_mode: squash}\n",
     ["'squash' is not one of"]),
    ("model:\n  pretrained: /no/such/model.pt\n", ["model.pretrained: local checkpoint '/no/such/model.pt' does not exist"]),
    ("clclip:\n  enabled: true\n  methods: [ft, nope]\n", ["clclip.methods: unknown CL-CLIP method(s) nope"]),
    ("clclip:\n  variants: [wm, both]\n", ["'both' is not one of ['wm', 'io', 'to']"]),
])
def test_bad_config_fails_before_any_job(tmp_path, cfg_text, expected):
    res = _dry_run(tmp_path, cfg_text)
    out = res.stdout + res.stderr
    assert res.returncode != 0
    for text in expected:
        assert text in out, out[-2000:]
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("preset, steps", [("tic-datacomp-medium", 7), ("tic-datacomp-large", 7),
                                           ("tic-yfcc", 4), ("tic-redcaps", 4)])
def test_paper_scale_presets_dry_run(tmp_path, preset, steps):
    """Each preset builds the whole DAG (download to tables) with its placeholder data paths."""
    cfg = yaml.safe_load((ROOT / "configs" / f"{preset}.yaml").read_text())
    validate(cfg, str(SCHEMA))
    assert cfg["data"]["source"] == "img2dataset" and len(cfg["tic"]["steps"]) == steps
    res = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--configfile", str(ROOT / "configs" / f"{preset}.yaml"),
         "--directory", str(tmp_path), "--snakefile", str(ROOT / "Snakefile")],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    jobs = dict(line.split() for line in res.stdout.split("Job stats:")[1].split("\n")[3:]
                if len(line.split()) == 2)
    methods = len(cfg["tic"]["methods"])
    assert jobs["prepare_metadata"] == "1" and jobs["download"] == "1" and jobs["data_report"] == "1"
    # every method trains step 0 by the plain recipe: one first-step job, copied to each run
    assert jobs["train_first_step"] == "1" and jobs["share_first_step"] == str(methods)
    assert jobs["train_step"] == str(methods * (steps - 1)) and jobs["evaluate_run"] == str(methods)
    assert "synthesize_world" not in jobs  # the synthetic data's rules are not in this DAG


def test_preset_compute_matches_the_paper():
    """TiC-DataComp: medium = ViT-B/32, batch 4096, 4,500 iterations; large = ViT-B/16, 8192, 22,500."""
    for preset, model, batch, iters in [("tic-datacomp-medium", "ViT-B-32", 4096, 4500),
                                        ("tic-datacomp-large", "ViT-B-16", 8192, 22500)]:
        cfg = yaml.safe_load((ROOT / "configs" / f"{preset}.yaml").read_text())
        assert cfg["model"]["name"] == model and cfg["train"]["batch_size"] == batch
        assert cfg["train"]["budget_samples"] == batch * iters


def test_clclip_study_plans_one_job_per_method_and_ablation(tmp_path):
    """With the CL-CLIP study on, the DAG holds its base pool and model, task, one job per method (the
    original model included; both settings inside), one per VR-LwF ablation, and the tables."""
    res = _dry_run(tmp_path, "clclip:\n  enabled: true\n")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    counts = dict(re.findall(r"^(clclip_\w+)\s+(\d+)$", out, re.M))
    assert counts == {"clclip_base_pool": "1", "clclip_base": "1", "clclip_task": "1", "clclip_run": "8", "clclip_ablation": "2",
                      "clclip_tables": "1", "clclip_uncertainty": "1"}, out[-3000:]


def _job_stats(stdout: str) -> dict[str, str]:
    """A dry run's job counts by rule (its first "Job stats" table, without the total)."""
    lines = stdout.split("Job stats:")[1].split("\n\n")[0].splitlines()[3:]
    return {job: n for job, n in (line.split() for line in lines) if job != "total"}


def test_the_three_seed_preset_runs_every_training_and_evaluation_job_per_seed_and_the_rest_once(tmp_path):
    cfg = yaml.safe_load((ROOT / "configs" / "replicates.yaml").read_text())
    assert len(cfg["replicates"]) >= 3
    res = _dry_run(tmp_path, (ROOT / "configs" / "replicates.yaml").read_text())
    assert res.returncode == 0, res.stderr[-3000:]
    jobs = _job_stats(res.stdout)
    (tmp_path / "one").mkdir()
    (tmp_path / "bad").mkdir()
    one = _dry_run(tmp_path / "one", "replicates: [0]\n")
    single = _job_stats(one.stdout)
    per_seed = {"train_first_step", "share_first_step", "train_step", "evaluate_run", "clclip_run", "clclip_ablation",
                "memclip_run"}
    for job, count in single.items():
        k = len(cfg["replicates"]) if job in per_seed else 1
        assert int(jobs[job]) == k * int(count), (job, jobs[job], count)
    assert {"findings", "tic_uncertainty", "clclip_uncertainty", "memclip_uncertainty"} <= set(jobs)
    assert "results/tic/seed2/models/oracle/2020-2021/model.pt" in res.stdout
    for bad, message in (("replicates: []\n", "should be non-empty"), ("replicates: [1, 1]\n", "non-unique")):
        res = _dry_run(tmp_path / "bad", bad)
        assert res.returncode != 0 and message in res.stdout + res.stderr, (res.stdout + res.stderr)[-1500:]
