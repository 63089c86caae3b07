"""Replay buffers of Cumulative-Exp and -Equal: exact composition, distinct keys, the training stream."""
import pytest

from ticlip_core.tic.buffers import draw_replay, equal_allocation, exp_allocation, shard_keys
from ticlip_core.data.bucketing import step_shards
from ticlip_core.data.loader import PixelSpec, train_batches
from ticlip_core.tic.methods import get_method

STEPS = ["2014-2016", "2017", "2018", "2019", "2020", "2021"]
D = 1000

# Per-step replay counts with a buffer of D = 1000 at paper steps t = 2..T (1-based: step t
# replays steps 1..t-1), oldest step first. Exp: each new step halves every older share;
# Equal: D / (t-1) each; rounding remainders go to the most recent steps.
EXP = {2: [1000], 3: [500, 500], 4: [250, 250, 500], 5: [125, 125, 250, 500], 6: [62, 62, 125, 250, 501]}
EQUAL = {2: [1000], 3: [500, 500], 4: [333, 333, 334], 5: [250, 250, 250, 250], 6: [200, 200, 200, 200, 200]}


@pytest.mark.parametrize("t", range(2, len(STEPS) + 1))
def test_exact_counts_per_step(t):
    assert exp_allocation(t - 1, D) == EXP[t]
    assert equal_allocation(t - 1, D) == EQUAL[t]
    for name, expected in (("cumulative_exp", EXP[t]), ("cumulative_equal", EQUAL[t])):
        plan = get_method(name, buffer_size=D).data_plan(t - 1, STEPS)
        assert plan == {**dict(zip(STEPS[: t - 1], expected)), STEPS[t - 1]: None}


def test_first_step_has_no_buffer_and_default_size_is_the_new_steps():
    assert get_method("cumulative_exp").data_plan(0, STEPS, new_step_size=10) == {STEPS[0]: None}
    plan = get_method("cumulative_equal", buffer_size=None).data_plan(2, STEPS, new_step_size=7)
    assert plan == {"2014-2016": 3, "2017": 4, "2018": None}
    with pytest.raises(ValueError, match="buffer_size"):
        get_method("cumulative_exp").data_plan(1, STEPS)


def test_halving_and_equal_split_hold_at_any_size():
    for t in range(1, 12):
        for size in (1, 7, 64, 999, 4096):
            e, q = exp_allocation(t, size), equal_allocation(t, size)
            assert sum(e) == sum(q) == size and len(e) == len(q) == t
            assert max(q) - min(q) <= 1
            assert e[-1] >= max(e)  # the most recent past step holds the largest share


def test_draw_is_distinct_seeded_and_capped():
    keys = {"a": [f"a{i}" for i in range(50)], "b": [f"b{i}" for i in range(5)]}
    drawn = draw_replay(keys, {"a": 20, "b": 9}, seed=3)
    assert len(drawn["a"]) == len(set(drawn["a"])) == 20 and set(drawn["a"]) <= set(keys["a"])
    assert sorted(drawn["b"]) == sorted(keys["b"])  # fewer than asked: all of them, no repeats
    assert drawn == draw_replay(keys, {"a": 20, "b": 9}, seed=3)
    assert drawn["a"] != draw_replay(keys, {"a": 20, "b": 9}, seed=4)["a"]


def test_training_stream_mixes_the_buffer_with_all_new_data(tiny_world):
    steps_dir = tiny_world / "steps"
    old, new = step_shards(steps_dir, "2014", "train"), step_shards(steps_dir, "2015", "train")
    old_keys, new_keys = shard_keys(old), shard_keys(new)
    replay = draw_replay({"2014": old_keys}, {"2014": 10}, seed=0)["2014"]
    budget = len(new_keys) + len(replay)  # exactly one pass over new data plus buffer
    seen = []
    for batch in train_batches(old + new, batch_size=16, pixels=PixelSpec(32, (0.5,) * 3, (0.5,) * 3),
                               tokenizer=None, num_samples=budget, seed=0, shuffle_buffer=50,
                               keep_keys=set(replay), restricted_shards=set(old)):
        seen += batch.keys
    assert len(seen) == len(set(seen)) == budget  # no key twice within the step
    assert set(seen) == set(new_keys) | set(replay)
