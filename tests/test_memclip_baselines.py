"""Every memclip baseline (EWC, iCaRL, DER, Co2L, FOSTER, CaSSLe) on the study's runner: a chain of
two tasks on a tiny benchmark of its scenario gives finite scores for every task seen so far, and
a chain killed while training task 1 and resumed from the chain store ends with exactly the scores
of the uninterrupted chain (so whatever a method carries across tasks is in its state), whatever
the state of torch's global generator when each run starts (a new process seeds it at random). Each
method's defining mechanism has its own test file (tests/test_memclip_<method>.py)."""
import math

import pytest
import torch

from ticlip_core.engine.chain_store import ChainStore
from ticlip_core.memclip import study
from ticlip_core.memclip.memory import memory_plan
from ticlip_core.memclip.methods import available_methods, get_method
from ticlip_core.memclip.synthetic_benchmark import build_synthetic_benchmark

from memclip_toys import micro_study_config

STUDY_METHODS = {"zero_shot", "finetune", "joint", "gcl", "gdro"}
BASELINES = sorted(set(available_methods()) - STUDY_METHODS)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _scenario(method: str) -> str:
    scenarios = get_method(method).scenarios
    return "class" if not scenarios or "class" in scenarios else scenarios[0]


@pytest.fixture(scope="module")
def benchmarks(tmp_path_factory):
    out = {}
    folder = tmp_path_factory.mktemp("baselines_class")
    build_synthetic_benchmark(folder, name="tiny", scenario="class", seed=0, num_classes=4, num_tasks=2, per_class=10,
                              val_fraction=0.25, test_fraction=0.25, image_size=32, render_size=48)
    out["class"] = study.load_data(str(folder))
    folder = tmp_path_factory.mktemp("baselines_domain")
    build_synthetic_benchmark(folder, name="dom", scenario="domain", seed=0, num_classes=3, per_class=10,
                              domains=["photo", "sketch"], val_fraction=0.25, test_fraction=0.25, image_size=32,
                              render_size=48)
    out["domain"] = study.load_data(str(folder))
    return out


def _cfg():
    return micro_study_config(batch_size=8)


def test_the_six_baselines_are_registered():
    assert BASELINES == ["cassle", "co2l", "der", "ewc", "foster", "icarl"]


@pytest.mark.parametrize("method", BASELINES)
def test_a_killed_chain_resumes_to_the_scores_of_an_uninterrupted_one(method, benchmarks, tmp_path, monkeypatch):
    scenario = _scenario(method)
    data = benchmarks[scenario]
    m = get_method(method)
    size = 4 if m.uses_memory else None
    plan = memory_plan(data["train_table"], 2, scenario, size, seed=0) if m.uses_memory else None
    kw = dict(method_name=method, memory=plan, memory_size=size, point={}, base_checkpoint=None, device="cpu")
    torch.manual_seed(0)
    whole = study.run_chain(_cfg(), data, **kw)
    assert [sorted(t["scores"]["test"]) for t in whole] == [["acc_seen", "acc_task0"],
                                                             ["acc_seen", "acc_task0", "acc_task1"]]
    assert all(math.isfinite(v) for t in whole for v in t["scores"]["test"].values())
    assert all(0.0 <= v <= 1.0 for t in whole for v in t["scores"]["test"].values())

    store = ChainStore(tmp_path / "work", "job")
    real_train = study.train_task

    def dies_at_task_1(ctx, method_obj, *args, **kwargs):
        if ctx.t == 1:
            raise KeyboardInterrupt
        return real_train(ctx, method_obj, *args, **kwargs)

    monkeypatch.setattr(study, "train_task", dies_at_task_1)
    torch.manual_seed(1)  # a new process's generator state: the chain seeds its own draws
    with pytest.raises(KeyboardInterrupt):
        study.run_chain(_cfg(), data, store=store, **kw)
    monkeypatch.setattr(study, "train_task", real_train)
    torch.manual_seed(123)  # the resumed chain restores the RNG state it saved
    resumed = study.run_chain(_cfg(), data, store=store, **kw)
    assert [t["scores"] for t in resumed] == [t["scores"] for t in whole]
