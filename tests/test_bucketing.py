"""Timestamp bucketing: every row in exactly one step and split, or counted; deterministic."""
import pandas as pd
import pytest

from ticlip_core.data.bucketing import assign_steps, parse_steps, split_of_key, summarise

STEPS = parse_steps(["2014-2016", "2017", "2018"])


def _manifest(n=3000):
    years = [2013 + (i % 7) for i in range(n)]  # 2013 .. 2019: 2013 and 2019 fall outside
    ts = [f"{y}-06-{1 + i % 28:02d}T12:00:00Z" for i, y in enumerate(years)]
    ts[5], ts[6], ts[7] = "not a date", None, "2017-13-45T00:00:00Z"
    return pd.DataFrame({"key": [f"{i:09d}" for i in range(n)], "timestamp": ts})


def test_parse_steps_rejects_bad_specs():
    assert [s.name for s in STEPS] == ["2014-2016", "2017", "2018"]
    assert (STEPS[0].start, STEPS[0].end) == (2014, 2016)
    with pytest.raises(ValueError, match="'2016' overlaps"):
        parse_steps(["2014-2016", "2016"])
    with pytest.raises(ValueError, match="'2018-2017' ends before"):
        parse_steps(["2018-2017"])
    with pytest.raises(ValueError, match="'20x7' is not a year"):
        parse_steps(["20x7"])


def test_counts_are_conserved_and_rows_land_once():
    m = _manifest()
    a = assign_steps(m, STEPS, 0.05, 0.1)
    s = summarise(a, STEPS)
    assert s["rows_in"] == 3000
    assert s["quarantined_bad_timestamp"] == 3
    # 2013 and 2019 rows: 2 of every 7 years, minus the bad-timestamp rows among them
    expected_outside = sum(1 for i in range(3000) if 2013 + (i % 7) in (2013, 2019) and i not in (5, 6, 7))
    assert s["outside_steps"] == expected_outside
    placed = sum(sum(v.values()) for v in s["steps"].values())
    assert placed + s["outside_steps"] + s["quarantined_bad_timestamp"] == 3000
    # each year's rows go to the right step
    y2015 = a[a["timestamp"].dt.year == 2015]
    assert set(y2015["step"]) == {"2014-2016"}
    assert a.loc[a["excluded"].notna(), "step"].isna().all()
    assert a.loc[a["step"].notna(), "split"].isin(["train", "val", "test"]).all()
    assert a["key"].is_unique


def test_split_is_a_function_of_the_key_only():
    a1 = assign_steps(_manifest(), STEPS, 0.05, 0.1)
    shuffled = _manifest().sample(frac=1.0, random_state=3)
    a2 = assign_steps(shuffled, STEPS, 0.05, 0.1).set_index("key").loc[a1["key"]]
    assert (a1["split"].fillna("-").to_numpy() == a2["split"].fillna("-").to_numpy()).all()
    assert split_of_key("000000042", 0.05, 0.1) == split_of_key("000000042", 0.05, 0.1)
    frac_test = (a1["split"] == "test").sum() / a1["split"].notna().sum()
    assert 0.07 < frac_test < 0.13


def test_timestamps_are_utc():
    m = pd.DataFrame({"key": ["a", "b"], "timestamp": ["2016-12-31T23:30:00-02:00", "2017-01-01T00:30:00+02:00"]})
    a = assign_steps(m, STEPS, 0.0, 0.5)
    # 23:30 at UTC-2 is 01:30 UTC on 1 Jan 2017; 00:30 at UTC+2 is 22:30 UTC on 31 Dec 2016
    assert list(a["step"]) == ["2017", "2014-2016"]


def test_a_step_without_training_data_fails_naming_it():
    m = pd.DataFrame({"key": [f"k{i}" for i in range(50)], "timestamp": ["2015-01-01T00:00:00Z"] * 50})
    with pytest.raises(ValueError, match="2017, 2018"):
        summarise(assign_steps(m, STEPS, 0.05, 0.1), STEPS)


def test_failed_downloads_are_counted_not_placed():
    m = pd.DataFrame({"key": ["a", "b", "c"], "timestamp": ["2017-01-01T00:00:00Z"] * 3,
                      "status": ["success", "failed_to_download", "success"]})
    a = assign_steps(m, STEPS, 0.0, 0.0)
    assert list(a["excluded"]) == [None, "download_failed", None]
