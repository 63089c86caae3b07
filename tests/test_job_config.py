"""Provenance at the unit level: each job's config is exactly the subset it reads."""
from pathlib import Path

import pytest

from conftest import micro_config
from ticlip_core import job_config
from ticlip_core.job_config import (clclip_ablation_job, clclip_base_job, clclip_method_job, evaluate_job,
                                    subset, train_job)
from ticlip_core.tic.runs import Run

ROOT = Path(__file__).resolve().parents[1]


def test_subset_keeps_only_the_dotted_paths_and_skips_absent_ones():
    cfg = {"a": {"b": 1, "c": {"d": 2, "e": 3}}, "f": 4}
    out = subset(cfg, ["a.c.d", "f", "missing.key", "a.x"])
    assert out == {"a": {"c": {"d": 2}}, "f": 4}
    out["a"]["c"]["d"] = 99
    assert cfg["a"]["c"]["d"] == 2  # a copy: a job may change its config


def test_no_workflow_script_reads_the_whole_config():
    readers = [p.name for p in (ROOT / "workflow_scripts").glob("*.py") if "snakemake.config" in p.read_text()]
    assert readers == []


def test_train_job_applies_run_overrides_and_holds_only_what_training_reads():
    cfg = micro_config()
    job = train_job(cfg, Run("cumulative_all@warmup", "cumulative_all", {"warmup_later_steps": True}), 1)
    assert set(job) == {"seed", "model", "train", "tic"} and set(job["tic"]) == {"steps"}
    assert job["train"]["warmup_later_steps"] is True and cfg["train"]["warmup_later_steps"] is False
    lwf = train_job({**cfg, "methods": {"lwf": {"beta": 0.5}, "patching": {}}}, Run("lwf", "lwf"), 0)
    assert lwf["methods"] == {"lwf": {"beta": 0.5}}


def test_patching_reads_the_evaluation_settings_only_where_it_searches_alpha():
    cfg = micro_config()
    assert "eval" not in train_job(cfg, Run("patching", "patching"), 0)
    assert set(train_job(cfg, Run("patching", "patching"), 1)["eval"]) == {"batch_size", "retrieval_pool_size", "cache_mb"}


def test_evaluation_job_reads_eval_and_model_not_training():
    job = evaluate_job(micro_config(), ["retrieval", "classification"])
    assert set(job) == {"eval", "model", "data"} and job["data"] == {"source": "synthetic"}


def test_clclip_jobs_read_their_own_keys():
    cfg = micro_config()
    base = clclip_base_job(cfg)
    assert base["train"]["lr"] == cfg["clclip"]["base"]["lr"] and base["model"]["name"] == cfg["clclip"]["model"]["name"]
    edited = micro_config(lr=cfg["train"]["lr"] / 2)  # replaced by clclip.base.lr: the base job is unchanged
    assert clclip_base_job(edited) == base
    assert clclip_base_job(micro_config(weight_decay=0.3)) != base  # not replaced: it is read
    ft, imm = clclip_method_job(cfg, "ft"), clclip_method_job(cfg, "imm")
    assert "grids" not in ft["clclip"] and set(imm["clclip"]["grids"]) == {"alpha"}
    assert ft["clclip"]["method_options"] == {"ft": {}}  # run_method reads the (empty) entry
    assert set(clclip_method_job(cfg, "original")["clclip"]) == {"model", "templates", "retrieval_fold_size"}
    length, pseudo = clclip_ablation_job(cfg, "length"), clclip_ablation_job(cfg, "num_pseudo")
    assert set(length["clclip"]["ablations"]) == {"beta", "length", "caption_replay"}
    assert set(pseudo["clclip"]["ablations"]) == {"beta", "num_pseudo"}


def test_building_every_job_config_imports_no_torch():
    """The Snakefile builds these for every job at each Snakemake start (dry-runs and cluster jobs
    included): importing torch and open_clip there cost 4.4 s a start."""
    import subprocess
    import sys

    code = ("import sys, yaml; from snakemake.utils import validate\n"
            "from ticlip_core import job_config as j, config_checks\n"
            "from ticlip_core.tic.runs import tic_runs\n"
            "cfg = yaml.safe_load(open('config.yaml')); validate(cfg, 'ticlip_core/schemas/config.schema.yaml')\n"
            "config_checks.check_config(cfg)\n"
            "[j.train_job(cfg, r, t) for r in tic_runs(cfg).values() for t in range(len(cfg['tic']['steps']))]\n"
            "j.evaluate_job(cfg, ['retrieval']); j.clclip_base_job(cfg)\n"
            "[j.clclip_method_job(cfg, m) for m in cfg['clclip']['methods'] + ['original']]\n"
            "[j.clclip_ablation_job(cfg, a) for a in ('length', 'num_pseudo')]\n"
            "print(sorted(m for m in ('torch', 'open_clip', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


def test_runs_share_the_first_step_unless_their_step_0_settings_differ():
    from ticlip_core.engine.method import Method
    from ticlip_core.registry import unregister
    from ticlip_core.tic.methods import register
    from ticlip_core.tic.runs import Run, tic_runs

    cfg = micro_config()
    runs = tic_runs(cfg)
    shared = job_config.shared_first_step_runs(cfg, runs)
    # the LR ablation's variants flip keys that act only on continuing steps: they share too
    assert set(shared) == set(runs) and "cumulative_all@warmup" in shared
    runs["hot"] = Run("hot", "sequential", {"lr": 0.5})  # an override that changes step 0
    assert "hot" not in job_config.shared_first_step_runs(cfg, runs)

    @register
    class OwnFirstStep(Method):
        """Test-only method with its own first step."""
        name = "own_first_step_test"
        study = "tic"

    try:
        runs = {"own": Run("own", "own_first_step_test"), "sequential": Run("sequential", "sequential"),
                "oracle": Run("oracle", "oracle")}
        assert job_config.shared_first_step_runs(cfg, runs) == ["sequential", "oracle"]
        del runs["oracle"]
        assert job_config.shared_first_step_runs(cfg, runs) == []  # one run alone trains its own
    finally:
        unregister("tic", "own_first_step_test")


def test_a_shared_first_step_copy_is_recorded_as_the_run(tmp_path):
    import json

    from ticlip_core.tic.first_step import copy_first_step

    src = {name: tmp_path / name for name in ("model.pt", "log.csv", "compute.json")}
    src["model.pt"].write_bytes(b"weights")
    src["log.csv"].write_text("iteration,loss\n1,3.4\n")
    src["compute.json"].write_text(json.dumps({"method": "first_step", "base_method": "sequential",
                                               "step_index": 0, "macs": 5}))
    out = tmp_path / "lwf"
    record = copy_first_step(model=src["model.pt"], log=src["log.csv"], compute=src["compute.json"],
                             run_name="lwf@x", method_name="lwf", out_model=out / "model.pt",
                             out_log=out / "log.csv", out_compute=out / "compute.json")
    assert (out / "model.pt").read_bytes() == b"weights"
    assert json.loads((out / "compute.json").read_text()) == record
    assert record == {"method": "lwf@x", "base_method": "lwf", "step_index": 0, "macs": 5,
                      "first_step": "shared", "trained_as": "first_step"}
    src["compute.json"].write_text(json.dumps({"method": "first_step", "step_index": 1}))
    with pytest.raises(ValueError, match="not a first step"):
        copy_first_step(model=src["model.pt"], log=src["log.csv"], compute=src["compute.json"], run_name="r",
                        method_name="lwf", out_model=out / "m", out_log=out / "l", out_compute=out / "c")
