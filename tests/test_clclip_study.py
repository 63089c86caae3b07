"""End to end: the CL-CLIP study (Ding et al.) through Snakemake on the micro config's CL-CLIP
block: base pool, original model, task, every method in both settings, the VR-LwF ablations,
Tables III-VIII and Fig. 4."""
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import micro_config, planned_jobs

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ["WM", "IO", "TO"]
METHODS_OST = ["FT", "LwF", "GeoDL", "IMM", "RKR", "VR-LwF"]
METHODS_MST = ["FT", "Joint-FT", "LwF", "GeoDL", "IMM", "RKR", "VR-LwF"]


def _command(work: Path) -> list[str]:
    return [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(work),
            "--configfile", str(ROOT / "configs/micro.yaml"), str(ROOT / "tests/data/micro_two_steps.yaml"),
            str(ROOT / "tests/data/micro_clclip.yaml"), "--cores", "2", "clclip_tables"]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    work = tmp_path_factory.mktemp("clclip_micro")
    run = subprocess.run(_command(work), capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return work / "results/clclip"


def _rows(table: pd.DataFrame) -> list[str]:
    return list(table["Method"])


@pytest.mark.parametrize("name, methods", [("table3_ost", METHODS_OST), ("table4_mst", METHODS_MST)])
def test_tables_3_and_4_hold_every_method_and_variant_with_scores(study, name, methods):
    table = pd.read_csv(study / f"{name}.csv")
    assert _rows(table) == ["Original CLIP"] + [f"{m}-{v}" for m in methods for v in VARIANTS]
    scores = table.drop(columns=["Method", "Hyperparameter"])
    assert list(scores.columns[:7]) == ["UT-Acc", "ZS-Acc", "TR@1", "TR@5", "IR@1", "IR@5", "A-Acc"]
    assert ("Bwt" in scores.columns) == (name == "table4_mst")
    assert scores.notna().all().all()
    assert ((scores.drop(columns=["Bwt"], errors="ignore") >= 0) & (scores.drop(columns=["Bwt"], errors="ignore")
                                                                     <= 100)).all().all()
    assert (abs(scores["A-Acc"] - (scores["UT-Acc"] + scores["ZS-Acc"]) / 2) < 1e-6).all()
    # the tuned methods name the value validation chose, from the micro config's grids
    hp = dict(zip(table["Method"], table["Hyperparameter"].fillna("")))
    assert hp["LwF-WM"] in ("beta=0.5", "beta=1.0") and hp["IMM-TO"] == "alpha=0.5" and hp["FT-WM"] == ""
    for ext in ("md", "tex"):
        text = (study / f"{name}.{ext}").read_text()
        assert "Table I" in text and "VR-LwF-TO" in text


@pytest.mark.parametrize("name, labels", [
    ("table5_ost_length", ["M=2", "M=4", "caption replay"]), ("table6_ost_num_pseudo", ["Ks=4", "Ks=8"]),
    ("table7_mst_length", ["M=2", "M=4", "caption replay"]), ("table8_mst_num_pseudo", ["Ks=4", "Ks=8"])])
def test_ablation_tables_have_one_row_per_value_at_the_fixed_beta(study, name, labels):
    table = pd.read_csv(study / f"{name}.csv")
    assert _rows(table) == ["Original CLIP"] + [f"{label}-WM" for label in labels]
    assert set(table["Hyperparameter"].dropna()) == {"beta=1.0"}
    assert table.drop(columns=["Method", "Hyperparameter"]).notna().all().all()


def test_chosen_values_are_written_next_to_the_results(study):
    chosen = json.loads((study / "seed0/runs/lwf.json").read_text())
    assert set(chosen) == {"ost", "mst"}
    for setting in chosen.values():
        assert set(setting) == {"wm", "io", "to"}
        for record in setting.values():
            assert record["hyperparameter"] == "beta" and set(record["val_a_acc"]) == {"0.5", "1.0"}
            tried = {float(v): a for v, a in record["val_a_acc"].items()}
            assert record["chosen"] == max(tried, key=tried.get)  # the first of equals, in grid order


def test_figure_4_and_all_rows(study):
    assert (study / "fig4_mst_sessions.png").stat().st_size > 10_000
    rows = pd.read_csv(study / "all_rows.csv", dtype={"train_step": str})  # the one row schema (docs/metrics.md)
    mst = rows[(rows["scenario"] == "mst") & (rows["train_step"] != "final")]
    assert set(mst["train_step"]) == {"0", "1"}  # the micro config's two sessions


def test_a_clclip_training_edit_reruns_the_trained_methods_only(study, tmp_path):
    """clclip.train.lr: every method and ablation job and the tables; not the original model's
    evaluation, its training (clclip.base), the task or the pool."""
    work = study.parents[1]
    methods = ["ft", "joint_ft", "lwf", "geodl", "imm", "rkr", "vr_lwf"]  # the default clclip.methods
    edit = {"clclip": {"train": {"lr": 0.0005}}}
    assert planned_jobs(_command(work), {"lr": edit}, tmp_path)["lr"] == {
        "clclip_run": len(methods), "clclip_ablation": 2, "clclip_tables": 1}


def test_compute_records_count_the_chosen_chain_and_the_whole_search(study):
    """runs/<method>.compute.json: one record per (setting, variant) of the chosen value; FT's MACs
    are 3 x (crops x image MACs + iterations x prompts x text MACs), the original's 0."""
    from ticlip_core.clclip.compute import RECORD_FIELDS
    from ticlip_core.engine.compute import tower_macs
    from ticlip_core.clclip.study import load_original

    lwf = json.loads((study / "seed0/runs/lwf.compute.json").read_text())
    assert [(r["setting"], r["variant"]) for r in lwf] == [(s, v) for s in ("ost", "mst") for v in ("wm", "io", "to")]
    assert all(tuple(r) == RECORD_FIELDS and r["method"] == "lwf" for r in lwf)
    assert all(r["search_macs"] > r["macs"] > 0 and r["samples"] > 0 for r in lwf)  # two betas tried
    ft = {(r["setting"], r["variant"]): r for r in json.loads((study / "seed0/runs/ft.compute.json").read_text())}
    model, _ = load_original(_config(), str(study / "base/model.pt"), "cpu")
    image, text = tower_macs(model)
    # micro: 4 classes x 8 crops, batches of 8, one epoch; OST one session, MST two of 2 classes
    assert ft["ost", "wm"]["macs"] == 3 * (32 * image + 4 * 4 * text) == ft["ost", "wm"]["search_macs"]
    assert ft["mst", "io"]["macs"] == 3 * (32 * image + 2 * 2 * 2 * text) and ft["mst", "io"]["samples"] == 32
    assert all(r["extra_macs"] == 0 for r in ft.values())
    original = json.loads((study / "seed0/runs/original.compute.json").read_text())
    assert [r["setting"] for r in original] == ["ost", "mst"] and all(r["macs"] == r["search_macs"] == 0 for r in original)
    ablation = json.loads((study / "seed0/ablations/length.compute.json").read_text())
    assert {r["method"] for r in ablation} == {"M=2", "M=4", "caption replay"} and len(ablation) == 6
    assert not list(study.glob("*/*.work"))  # every job removed its work folder


def _config(**train) -> dict:
    cfg = micro_config()
    cfg["clclip"]["enabled"] = True
    cfg["clclip"]["train"].update(train)
    return cfg


def _one_chain(study, **train):
    from ticlip_core.clclip.study import run_method

    return run_method(_config(**train), setting="ost", method_name="lwf", task_dir=str(study / "task"),
                      base_checkpoint=str(study / "base/model.pt"), variants=["wm"])


def test_run_method_trains_on_the_engines_device_by_default(study):
    """No device given: the engine's (init_world().device(), the CPU here), the same numbers as the job."""
    rows, record, compute = _one_chain(study)
    job = json.loads((study / "seed0/runs/lwf.json").read_text())["ost"]["wm"]
    assert record["wm"]["val_a_acc"] == job["val_a_acc"] and record["wm"]["chosen"] == job["chosen"]
    job_compute = [r for r in json.loads((study / "seed0/runs/lwf.compute.json").read_text())
                   if (r["setting"], r["variant"]) == ("ost", "wm")]
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in compute] == \
        [{k: v for k, v in r.items() if k != "seconds"} for r in job_compute]


def test_bf16_autocast_trains_the_same_samples_on_the_cpu(study):
    rows, record, compute = _one_chain(study, precision="bf16")
    fp32 = json.loads((study / "seed0/runs/lwf.compute.json").read_text())[0]
    assert compute[0]["samples"] == fp32["samples"] and compute[0]["macs"] == fp32["macs"]
    assert rows and all(pd.notna(r["value"]) for r in rows)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_chain_on_cuda_with_bf16(study):
    rows, record, compute = _one_chain(study, precision="bf16", channels_last=True)
    assert rows and all(pd.notna(r["value"]) for r in rows)
    assert compute[0]["macs"] > 0 and record["wm"]["chosen"] in (0.5, 1.0)


def test_a_chain_resumes_after_its_last_finished_session(study, tmp_path, monkeypatch, capfd):
    """RKR in MST: its scales are parameters a fresh model lacks (prepare_model installs them
    before the saved weights load); the resumed chain scores as the uninterrupted one."""
    from ticlip_core.engine.chain_store import ChainStore
    from ticlip_core.clclip.scoring import load_task
    from ticlip_core.clclip.study import run_chain

    task, plan = load_task(str(study / "task"))
    cfg = _config()
    chain = dict(setting="mst", method_name="rkr", variant="wm", options=cfg["clclip"]["method_options"]["rkr"],
                 task=task, plan=plan, base_checkpoint=str(study / "base/model.pt"), device="cpu")
    full, full_info = run_chain(cfg, **chain)
    store, save = ChainStore(tmp_path / "work", "job"), ChainStore.save

    def save_then_die(self, *args, **kwargs):
        save(self, *args, **kwargs)
        raise KeyboardInterrupt  # killed right after the first session was kept

    with monkeypatch.context() as m:
        m.setattr(ChainStore, "save", save_then_die)
        with pytest.raises(KeyboardInterrupt):
            run_chain(cfg, **chain, store=store)
    resumed, info = run_chain(cfg, **chain, store=store)
    assert "resuming rkr-wm mst" in capfd.readouterr().err
    strip = [{k: v for k, v in s.items() if k != "seconds"} for s in full]
    assert [{k: v for k, v in s.items() if k != "seconds"} for s in resumed] == strip and info == full_info
    assert len(resumed) == 2 and resumed[1]["iterations"] > 0
