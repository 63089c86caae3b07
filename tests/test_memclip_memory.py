"""memclip's fixed memory: a constant total size M, balanced over the groups seen so far
(class-incremental: classes; domain-incremental: (domain, class) pairs), old groups cut down at
random to make room, deterministic in the seed."""
import json

import pandas as pd
import pytest

from ticlip_core.memclip.memory import memory_plan, memory_record, quotas


def train_table(tasks, classes_per_task, per_class, scenario="class", sizes=None):
    """A train table: ``tasks`` tasks; class-incremental: task t holds classes
    t*c..t*c+c-1; domain-incremental: every task holds classes 0..c-1. ``per_class`` samples per
    (task, class) unless ``sizes[(task, label)]`` says otherwise. Index values are shuffled
    away from row order (x 7 + 3) so nothing can rely on them being 0..N-1."""
    recs, n = [], 0
    for t in range(tasks):
        for c in range(classes_per_task):
            label = t * classes_per_task + c if scenario == "class" else c
            for _ in range((sizes or {}).get((t, label), per_class)):
                recs.append(dict(key=f"s{n:04d}", label=label, task=t, domain=f"d{t}", index=7 * n + 3))
                n += 1
    return pd.DataFrame(recs)


def groups_of(table, held, scenario="class"):
    sel = table[table["index"].isin(held)]
    if scenario == "class":
        return sel["label"].value_counts().to_dict()
    return sel.groupby(["task", "label"]).size().to_dict()


def test_hand_checked_two_tasks_two_classes():
    table = train_table(2, 2, 5)
    plan = memory_plan(table, 2, "class", 4, seed=0)
    assert len(plan) == 3 and plan[0] == []
    # while task 1 trains: 2 of class 0 and 2 of class 1, all from task 0
    assert groups_of(table, plan[1]) == {0: 2, 1: 2}
    assert set(plan[1]) <= set(table.loc[table.task == 0, "index"])
    # after task 1: 1 per class of the four
    assert groups_of(table, plan[2]) == {0: 1, 1: 1, 2: 1, 3: 1}
    old = table.loc[table["index"].isin(plan[2]) & (table.task == 0), "index"]
    assert set(old) <= set(plan[1])
    assert all(p == sorted(p) for p in plan)


def test_quotas_water_filling():
    assert quotas({0: 9, 1: 9, 2: 9}, 10) == {0: 4, 1: 3, 2: 3}
    # group 1 has only 1: keeps it, its 2 spare slots go to 0 and 2 equally (5 each)
    assert quotas({0: 9, 1: 1, 2: 9}, 11) == {0: 5, 1: 1, 2: 5}
    # spare slots re-spread until none short: 2 is capped after 1's spare arrives
    assert quotas({0: 20, 1: 0, 2: 4}, 12) == {0: 8, 1: 0, 2: 4}
    assert quotas({0: 2, 1: 3}, 100) == {0: 2, 1: 3}
    assert quotas({(0, 1): 5, (0, 0): 5}, 3) == {(0, 0): 2, (0, 1): 1}


@pytest.mark.parametrize("size", [0, 1, 3, 7, 12, 30])
def test_invariants_class_incremental(size):
    table = train_table(4, 3, 6)
    plan = memory_plan(table, 4, "class", size, seed=5)
    assert len(plan) == 5 and plan[0] == []
    task_of = dict(zip(table["index"], table["task"]))
    for t in range(1, 5):
        held = plan[t]
        assert len(held) == len(set(held)) == min(size, 18 * t)
        # only groups seen so far: nothing from task t or later
        assert all(task_of[i] < t for i in held)
        counts = groups_of(table, held)
        seen = 3 * t
        if size >= seen:  # every seen class has enough samples for its share
            assert len(counts) == seen and max(counts.values()) - min(counts.values()) <= 1
        else:
            assert sorted(counts.values()) == [1] * size
        if t >= 2:  # a sample kept at t was in memory at t-1 or comes from task t-1
            assert all(i in set(plan[t - 1]) or task_of[i] == t - 1 for i in held)


def test_large_memory_keeps_everything_seen():
    table = train_table(3, 2, 4)
    plan = memory_plan(table, 3, "class", 1000, seed=1)
    for t in range(4):
        assert plan[t] == sorted(table.loc[table.task < t, "index"])


def test_short_group_gives_its_slots_to_others():
    # class 1 has only 1 sample; M=7 over classes 0,1,2 (task 0) -> 3, 1, 3
    table = train_table(2, 3, 6, sizes={(0, 1): 1})
    plan = memory_plan(table, 2, "class", 7, seed=0)
    assert groups_of(table, plan[1]) == {0: 3, 1: 1, 2: 3}
    # after task 1: 6 classes, 7 slots: first class (sorted) gets 2, class 1 keeps its 1
    assert groups_of(table, plan[2]) == {0: 2, 1: 1, 2: 1, 3: 1, 4: 1, 5: 1}


def test_deterministic_and_seeded():
    table = train_table(3, 4, 10)
    a = memory_plan(table, 3, "class", 12, seed=3)
    assert a == memory_plan(table, 3, "class", 12, seed=3)
    assert a == memory_plan(table.sample(frac=1, random_state=0), 3, "class", 12, seed=3)  # row order moot
    assert a != memory_plan(table, 3, "class", 12, seed=4)


def test_domain_groups_are_domain_and_class():
    table = train_table(3, 2, 5, scenario="domain")
    plan = memory_plan(table, 3, "domain", 6, seed=2)
    # after domain 0: classes 0,1 of domain 0, 3 each
    assert groups_of(table, plan[1], "domain") == {(0, 0): 3, (0, 1): 3}
    # after domain 1: four (domain, class) pairs; first two in sorted order take the extra one
    assert groups_of(table, plan[2], "domain") == {(0, 0): 2, (0, 1): 2, (1, 0): 1, (1, 1): 1}
    assert groups_of(table, plan[3], "domain") == {g: 1 for g in [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]}
    task_of = dict(zip(table["index"], table["task"]))
    assert all(task_of[i] < t for t in range(4) for i in plan[t])
    # balancing over classes alone would leave the class view unchanged; here each domain gets room
    record = memory_record(table, plan, "domain")
    assert record["memory"][3]["per_group"] == {"0:0": 1, "0:1": 1, "1:0": 1, "1:1": 1, "2:0": 1, "2:1": 1}


def test_record_is_json_and_matches_plan():
    table = train_table(2, 2, 5)
    plan = memory_plan(table, 2, "class", 4, seed=0)
    record = json.loads(json.dumps(memory_record(table, plan, "class")))
    mem = record["memory"]
    assert [m["task"] for m in mem] == [0, 1, 2] and [m["size"] for m in mem] == [0, 4, 4]
    assert mem[2]["per_group"] == {"0": 1, "1": 1, "2": 1, "3": 1}
    key_of = dict(zip(table["index"], table["key"]))
    assert mem[1]["keys"] == [key_of[i] for i in plan[1]]
    with pytest.raises(ValueError, match="not in the train table"):
        memory_record(table, [[], [999999]], "class")


@pytest.mark.parametrize("kwargs, match", [
    (dict(size=-1), "size"), (dict(size=2.5), "size"), (dict(scenario="blurry"), "scenario"),
    (dict(num_tasks=1), "task id"), (dict(seed=-3), "seed"),
])
def test_bad_input(kwargs, match):
    args = dict(table=train_table(2, 2, 3), num_tasks=2, scenario="class", size=4, seed=0) | kwargs
    with pytest.raises(ValueError, match=match):
        memory_plan(**args)


def test_missing_column():
    with pytest.raises(ValueError, match="lacks column.*domain"):
        memory_plan(train_table(2, 2, 3).drop(columns="domain"), 2, "class", 4, 0)
