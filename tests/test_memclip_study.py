"""The memclip study: what each method trains on, a chain's resume (GCL's estimators continue),
a domain-incremental chain, the headline scores of a chain, job provenance, and a micro
end-to-end run through Snakemake (the class-incremental benchmark, the study's five methods and
DER, a baseline with heads, at two memory sizes including 0)."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import planned_jobs
from memclip_toys import micro_study_config

from ticlip_core.engine.chain_store import ChainStore
from ticlip_core.job_config import memclip_data_job, memclip_memory_job, memclip_method_job
from ticlip_core.memclip import study
from ticlip_core.memclip.memory import memory_plan
from ticlip_core.memclip.methods import available_methods, get_method
from ticlip_core.memclip.synthetic_benchmark import build_synthetic_benchmark

ROOT = Path(__file__).resolve().parents[1]
MICRO = [ROOT / "configs/micro.yaml", ROOT / "tests/data/micro_memclip.yaml"]


# ----- methods -----------------------------------------------------------------------------------

def test_registry_and_what_each_method_trains_on():
    assert available_methods() == ["cassle", "co2l", "der", "ewc", "finetune", "foster", "gcl", "gdro", "icarl",
                                   "joint", "zero_shot"]
    task_of_row = np.array([0, 0, 1, 1, 2, 2])
    memory = [0, 2]  # rows of tasks 0 and 1 held in memory while task 2 trains
    assert get_method("finetune").training_rows(2, task_of_row, memory) == [0, 2, 4, 5]
    assert get_method("gcl").training_rows(2, task_of_row, memory) == [0, 2, 4, 5]
    assert get_method("joint").training_rows(2, task_of_row, memory) == [0, 1, 2, 3, 4, 5]  # no memory needed
    assert get_method("finetune").training_rows(1, task_of_row, []) == [2, 3]  # M = 0: no replay
    assert not get_method("zero_shot").trains and not get_method("zero_shot").uses_memory
    assert not get_method("joint").uses_memory and get_method("gdro").uses_memory
    with pytest.raises(TypeError, match="unknown option"):
        get_method("gcl", temperature=0.1)


def test_finetune_loss_is_cross_entropy_over_the_seen_classes_only():
    from ticlip_core.memclip.methods.base import TaskBatch

    sims = torch.tensor([[0.5, 0.1, 0.9], [0.2, 0.4, -0.3]])
    seen = torch.tensor([0, 1])  # class 2 is not seen yet: its column must not count
    batch = TaskBatch(sims=sims, labels=torch.tensor([0, 1]), indices=torch.tensor([0, 1]), seen=seen,
                      logit_scale=torch.tensor(10.0))
    loss = get_method("finetune").loss(None, batch)
    by_hand = (-np.log(np.exp(5.0) / (np.exp(5.0) + np.exp(1.0))) - np.log(np.exp(4.0) / (np.exp(2.0) + np.exp(4.0)))) / 2
    assert loss.item() == pytest.approx(by_hand, rel=1e-6)


# ----- a chain on a tiny benchmark ---------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("memclip_tiny")
    build_synthetic_benchmark(folder, name="tiny", scenario="class", seed=0, num_classes=4, num_tasks=2, per_class=12,
                              val_fraction=0.25, test_fraction=0.25, image_size=32, render_size=48)
    return folder


def _cfg(**train):
    return micro_study_config(method_options={"gcl": {"tau": 0.1, "gamma": 0.5}}, **train)


def test_gcl_chain_resumes_after_a_finished_task_with_its_estimators(tiny, tmp_path, monkeypatch):
    data = study.load_data(str(tiny))
    plan = memory_plan(data["train_table"], 2, "class", 4, seed=0)
    kw = dict(method_name="gcl", memory=plan, memory_size=4, point={}, base_checkpoint=None, device="cpu")
    torch.manual_seed(0)
    whole = study.run_chain(_cfg(), data, **kw)

    # the same chain killed while training task 1: task 0 is kept in the work folder
    store = ChainStore(tmp_path / "work", "job")
    seen_states = []
    real_train = study.train_task

    def dies_at_task_1(ctx, method, *args, **kwargs):
        if ctx.t == 1:
            seen_states.append({k: v.clone() for k, v in method.state_dict().items()})
            raise KeyboardInterrupt
        return real_train(ctx, method, *args, **kwargs)

    monkeypatch.setattr(study, "train_task", dies_at_task_1)
    torch.manual_seed(0)
    with pytest.raises(KeyboardInterrupt):
        study.run_chain(_cfg(), data, store=store, **kw)
    saved = torch.load(next((tmp_path / "work").glob("chain_*.pt")), weights_only=False)
    assert len(saved["sessions"]) == 1 and saved["method_state"]["seen_image"].any()
    # the estimators saved after task 0 are those task 1 started from
    for name, value in saved["method_state"].items():
        assert torch.equal(value, seen_states[0][name])

    monkeypatch.setattr(study, "train_task", real_train)
    resumed_states = []

    def records_start(ctx, method, *args, **kwargs):
        resumed_states.append({k: v.clone() for k, v in method.state_dict().items()})
        return real_train(ctx, method, *args, **kwargs)

    monkeypatch.setattr(study, "train_task", records_start)
    torch.manual_seed(123)  # the resumed chain restores the RNG state it saved
    resumed = study.run_chain(_cfg(), data, store=store, **kw)
    assert len(resumed_states) == 1  # only task 1 was trained again
    for name, value in saved["method_state"].items():
        assert torch.equal(resumed_states[0][name], value)
    assert [t["scores"] for t in resumed] == [t["scores"] for t in whole]


def test_a_domain_incremental_chain_scores_every_class_at_every_task(tmp_path):
    """Domain-incremental: every task holds every class, the memory is balanced over (domain,
    class) pairs, and after task t the test samples of domains 0..t are scored among all classes."""
    build_synthetic_benchmark(tmp_path, name="dom", scenario="domain", seed=0, num_classes=3, per_class=10,
                              domains=["photo", "sketch"], val_fraction=0.25, test_fraction=0.25, image_size=32,
                              render_size=48)
    data = study.load_data(str(tmp_path))
    assert data["benchmark"].seen_classes(0) == [0, 1, 2]
    plan = memory_plan(data["train_table"], 2, "domain", 6, seed=0)
    held = data["train_table"].set_index("index").loc[plan[1]]
    assert len(plan[1]) == 6 and set(held["task"]) == {0} and sorted(held["label"]) == [0, 0, 1, 1, 2, 2]
    tasks = study.run_chain(_cfg(), data, method_name="finetune", memory=plan, memory_size=6, point={},
                            base_checkpoint=None, device="cpu")
    assert [sorted(t["scores"]["test"]) for t in tasks] == [["acc_seen", "acc_task0"],
                                                             ["acc_seen", "acc_task0", "acc_task1"]]
    test = data["test_table"]
    # A_1 pools both domains' test samples: the sample-weighted mean of the two tasks' accuracies
    n0, n1 = (test["task"] == 0).sum(), (test["task"] == 1).sum()
    last = tasks[1]["scores"]["test"]
    assert last["acc_seen"] == pytest.approx((n0 * last["acc_task0"] + n1 * last["acc_task1"]) / (n0 + n1))
    assert tasks[1]["rows"] == (data["train_table"]["task"] == 1).sum() + 6  # task 1's rows plus the memory


def test_summary_scores_from_hand_made_task_records():
    tasks = [{"task": 0, "scores": {"test": {"acc_task0": 0.9, "acc_seen": 0.9}}},
             {"task": 1, "scores": {"test": {"acc_task0": 0.6, "acc_task1": 0.8, "acc_seen": 0.7}}},
             {"task": 2, "scores": {"test": {"acc_task0": 0.5, "acc_task1": 0.7, "acc_task2": 0.9, "acc_seen": 0.7}}}]
    scores = study.summary_scores(tasks)
    assert scores["last"] == pytest.approx(0.7)
    assert scores["avg"] == pytest.approx((0.9 + 0.7 + 0.7) / 3)
    assert scores["forgetting"] == pytest.approx(((0.9 - 0.5) + (0.8 - 0.7)) / 2)
    rows = study.chain_rows(tasks, benchmark="b", method="gcl", memory_size=20, point={"lr": 0.001})
    frame = pd.DataFrame(rows)
    assert set(frame["variant"]) == {"20"} and set(frame["chosen"]) == {"lr=0.001"}
    assert frame.query("train_step == '2' and task == 'task' and eval_step == '1'")["value"].item() == pytest.approx(0.7)
    assert frame.query("train_step == 'final' and metric == 'forgetting'")["value"].item() == pytest.approx(0.25)


def test_grid_points_and_unknown_grid_keys(tiny):
    assert study.grid_points({"lr": [1, 2], "tau": [3]}) == [{"lr": 1, "tau": 3}, {"lr": 2, "tau": 3}]
    assert study.grid_points({}) == [{}]
    cfg = _cfg()
    cfg["memclip"]["grids"] = {"finetune": {"tau": [0.1]}}
    with pytest.raises(ValueError, match=r"memclip.grids.finetune: \['tau'\] are neither"):
        study.run_method(cfg, benchmark_dir=str(tiny), memory_file=None, method_name="finetune",
                         base_checkpoint=None, device="cpu")


# ----- provenance ----------------------------------------------------------------------------------

def _config():
    from snakemake.utils import validate

    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    validate(cfg, str(ROOT / "ticlip_core/schemas/config.schema.yaml"))
    return cfg


def test_each_job_reads_only_what_can_change_its_outputs():
    cfg = _config()
    zs, ft = memclip_method_job(cfg, "class_il", "zero_shot"), memclip_method_job(cfg, "class_il", "finetune")
    assert "lr" not in zs["memclip"]["train"] and "benchmark" not in zs["memclip"]  # no training, no memory
    assert ft["memclip"]["benchmark"]["memory_sizes"] == cfg["memclip"]["benchmarks"]["class_il"]["memory_sizes"]
    assert "benchmark" not in memclip_method_job(cfg, "class_il", "joint")["memclip"]
    assert "memory_sizes" not in memclip_data_job(cfg, "class_il")["memclip"]["benchmark"]
    assert memclip_memory_job(cfg, "domain_il")["memclip"]["benchmark"]["memory_sizes"] == [0, 48, 192]


# ----- micro end to end ----------------------------------------------------------------------------

def _command(work: Path) -> list[str]:
    return [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(work),
            "--configfile", *map(str, MICRO), "--cores", "2", "memclip_tables"]


@pytest.fixture(scope="module")
def micro_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("memclip_micro")
    run = subprocess.run(_command(work), capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return work / "results/memclip"


def test_micro_study_writes_every_table_figure_and_memory_audit(micro_run):
    sizes = {"class_il": [0, 4]}
    for bench, memory in sizes.items():
        table = pd.read_csv(micro_run / f"{bench}_table.csv")
        expected = ([("zero_shot", None)] + [(m, s) for m in ("finetune", "gcl", "gdro", "der") for s in memory]
                    + [("joint", None)])
        assert len(table) == len(expected)
        assert table[["Last", "Avg", "Forgetting"]].notna().all().all()
        assert ((table["Last"] >= 0) & (table["Last"] <= 100)).all()
        for ext in ("md", "tex", "html"):
            assert (micro_run / f"{bench}_table.{ext}").stat().st_size > 200
        assert (micro_run / f"{bench}_accuracy_curves.png").read_bytes()[:4] == b"\x89PNG"
        audit = json.loads((micro_run / bench / "memory.json").read_text())
        for size in memory:
            for record in audit["audit"][str(size)]["memory"]:
                assert record["size"] <= size and len(record["keys"]) == record["size"]
        chosen = json.loads((micro_run / "seed0" / bench / "runs/finetune.json").read_text())
        assert set(chosen) == {str(s) for s in memory}
        assert all(set(c["val_last"]) == {"lr=0.0001", "lr=0.001"} for c in chosen.values())
    assert (micro_run / "fig1_last_vs_memory.png").stat().st_size > 1000
    rows = pd.read_csv(micro_run / "all_rows.csv", dtype=str, keep_default_na=False)
    assert set(rows["study"]) == {"memclip"} and set(rows["scenario"]) == set(sizes)
    assert not list(micro_run.glob("seed0/*/runs/*.work"))  # the work folders are removed once the outputs are written


def test_a_config_edit_reruns_exactly_the_jobs_it_affects(micro_run, tmp_path):
    """After the micro run: a training edit reruns the five trained methods (DER included; not
    zero-shot, the data or the memory); a GCL option only GCL's jobs; a new memory size its memory
    plan and its four replaying methods."""
    planned = planned_jobs(_command(micro_run.parents[1]), {
        "lr": {"memclip": {"train": {"lr": 0.0005}}},
        "tau": {"memclip": {"method_options": {"gcl": {"tau": 0.2}}}},
        "memory": {"memclip": {"benchmarks": {"class_il": {"memory_sizes": [0, 8]}}}},
    }, tmp_path)
    assert planned["lr"] == {"memclip_run": 5, "memclip_tables": 1}
    assert planned["tau"] == {"memclip_run": 1, "memclip_tables": 1}
    assert planned["memory"] == {"memclip_memory": 1, "memclip_run": 4, "memclip_tables": 1}
