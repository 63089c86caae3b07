"""The per-sample entries behind memclip's rows (``ticlip_core.samples``): every accuracy row and
every row computed from accuracies (A[t][j], A_t, Last, Avg, Forgetting) has entries that give its
value, on the benchmark's test samples, the same for every method; a hand-computed Avg and
Forgetting (the argmax task fixed at the full sample); a broken entry fails ``check_matches``."""
import json

import numpy as np
import pytest

from ticlip_core import rows as row_schema
from ticlip_core import samples
from ticlip_core.memclip import study
from ticlip_core.memclip.memory import memory_plan
from ticlip_core.memclip.synthetic_benchmark import build_synthetic_benchmark

from memclip_toys import micro_study_config

ACCURACY_METRICS = {"acc", "last", "avg", "forgetting"}

# ----- a hand-made chain: 3 tasks, two test samples each (rows 0-1 task 0, 2-3 task 1, 4-5 task 2) -----

TASK_OF_ROW = [0, 0, 1, 1, 2, 2]
CREDIT = [[1, 0], [1, 1, 1, 0], [0, 1, 0, 0, 1, 1]]  # after task t, rows 0..2t+1


def _records():
    """Task records as ``run_chain`` returns them, their scores the means of ``CREDIT``."""
    out = []
    for t, credit in enumerate(CREDIT):
        credit, of_task = np.array(credit, float), np.array(TASK_OF_ROW[:len(credit)])
        test = {f"acc_task{j}": credit[of_task == j].mean() for j in range(t + 1)}
        test["acc_seen"] = credit.mean()
        out.append({"task": t, "scores": {"test": test},
                    "test_samples": {"rows": list(range(len(credit))), "task": of_task.tolist(),
                                     "credit": credit.tolist()}})
    return out


def _hand_made():
    tasks = _records()
    kw = dict(benchmark="b", method="gcl", memory_size=4, point={"lr": 0.001})
    return row_schema.frame(study.chain_rows(tasks, **kw)), samples.frame(study.chain_samples(tasks, set_size=6, **kw))


def _final(entries, metric):
    return entries[(entries["train_step"] == "final") & (entries["metric"] == metric)]


def test_hand_computed_avg_and_forgetting_entries():
    rows, entries = _hand_made()
    samples.check_matches(rows, entries)
    value = rows.set_index("metric").loc[["last", "avg", "forgetting"], "value"]
    # A_t = 0.5, 0.75, 0.5; forgetting: task 0 peaked after task 1 (1.0) and ends at 0.5, task 1 falls 0.5 -> 0
    assert value.tolist() == pytest.approx([0.5, (0.5 + 0.75 + 0.5) / 3, 0.5])
    avg = _final(entries, "avg")
    assert avg["sample"].tolist() == [0, 1, 0, 1, 2, 3, 0, 1, 2, 3, 4, 5]  # a sample once per task it is seen
    assert avg["weight"].tolist() == pytest.approx([1 / 6] * 2 + [1 / 12] * 4 + [1 / 18] * 6)
    forgetting = _final(entries, "forgetting")
    assert forgetting["sample"].tolist() == [0, 1, 2, 3] and forgetting["weight"].tolist() == [0.25] * 4
    # task 0: model 1 (the argmax, not model 0) minus model 2 on samples 0, 1; task 1: model 1 minus model 2
    assert forgetting["outcome"].tolist() == [1 - 0, 1 - 1, 1 - 0, 0 - 0]
    last = _final(entries, "last")
    assert last["sample"].tolist() == list(range(6)) and last["outcome"].tolist() == CREDIT[2]
    cell = entries.query("train_step == '1' and task == 'task' and eval_step == '1'")
    assert cell["sample"].tolist() == [2, 3] and cell["outcome"].tolist() == [1, 0]
    assert set(entries["sample_set"]) == {"memclip/b/test"} and set(entries["set_size"]) == {6}


def test_a_broken_entry_fails_check_matches_naming_the_row():
    rows, entries = _hand_made()
    broken = entries.copy()
    broken.loc[_final(broken, "forgetting").index[0], "outcome"] = 0.0
    with pytest.raises(ValueError, match="forgetting"):
        samples.check_matches(rows, broken)
    stray = entries.copy()
    stray.loc[stray.index[0], "metric"] = "no_such_metric"
    with pytest.raises(ValueError, match="do not exist"):
        samples.check_matches(rows, stray)


def test_records_without_outcomes_are_refused():
    tasks = _records()
    del tasks[1]["test_samples"]
    with pytest.raises(ValueError, match="task 1's record has no per-sample outcomes"):
        study.chain_samples(tasks, benchmark="b", method="gcl", memory_size=4, point={}, set_size=6)


# ----- real methods on a tiny benchmark ------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("memclip_samples")
    build_synthetic_benchmark(folder, name="tiny", scenario="class", seed=0, num_classes=4, num_tasks=2, per_class=12,
                              val_fraction=0.25, test_fraction=0.25, image_size=32, render_size=48)
    train = study.load_data(str(folder))["train_table"]
    plans = {str(m): memory_plan(train, 2, "class", m, seed=0) for m in (0, 4)}
    (folder / "memory.json").write_text(json.dumps({"plans": plans}))
    return folder


def _cfg():
    return micro_study_config(benchmark={"memory_sizes": [0, 4]}, grids={"finetune": {"lr": [1e-3, 1e-4]}})


@pytest.fixture(scope="module")
def runs(tiny):
    out = {}
    for method in ("zero_shot", "finetune", "joint"):
        rows, _, _, entries = study.run_method(_cfg(), benchmark_dir=str(tiny), memory_file=str(tiny / "memory.json"),
                                               method_name=method, base_checkpoint=None, device="cpu")
        out[method] = row_schema.frame(rows), samples.frame(entries)
    return out


def test_every_accuracy_row_of_a_method_job_has_entries_that_give_its_value(runs, tiny):
    test_size = len(study.load_data(str(tiny))["test_table"])
    for method, (rows, entries) in runs.items():
        samples.check_matches(rows, entries)
        assert set(rows["metric"]) == ACCURACY_METRICS
        keyed = set(map(tuple, entries[list(row_schema.KEY)].drop_duplicates().to_numpy()))
        assert keyed == set(map(tuple, rows[list(row_schema.KEY)].to_numpy())), method  # every row, no other
        assert set(zip(entries["sample_set"], entries["set_size"])) == {("memclip/tiny/test", test_size)}
    assert set(runs["finetune"][0]["variant"]) == {"0", "4"}  # every memory size's chosen grid point


def test_two_methods_share_the_test_samples_of_every_row(runs):
    on = ["train_step", "task", "eval_step", "metric"]

    def layout(entries):
        """Each row's samples and weights, by the row's step, task and metric."""
        return {key: (g["sample"].tolist(), g["weight"].round(12).tolist()) for key, g in entries.groupby(on)}

    zero_shot = layout(runs["zero_shot"][1])
    for method in ("finetune", "joint"):
        for size, entries in runs[method][1].groupby("variant"):
            assert layout(entries) == zero_shot, (method, size)
