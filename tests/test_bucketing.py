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
    assert s["bad_timestamp"] == 3
    # 2013 and 2019 rows: 2 of every 7 years, minus the bad-timestamp rows among them
    expected_outside = sum(1 for i in range(3000) if 2013 + (i % 7) in (2013, 2019) and i not in (5, 6, 7))
    assert s["outside_steps"] == expected_outside
    placed = sum(v[sp] for v in s["steps"].values() for sp in ("train", "val", "test"))
    assert placed == sum(v["rows"] for v in s["steps"].values())
    assert placed + s["outside_steps"] + s["bad_timestamp"] == 3000
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


def test_failed_downloads_are_counted_per_step():
    m = pd.DataFrame({"key": [f"k{i}" for i in range(40)],
                      "timestamp": ["2017-01-01T00:00:00Z"] * 20 + ["2018-05-01T00:00:00Z"] * 20,
                      "status": (["success"] * 17 + ["failed_to_download"] * 3
                                 + ["success"] * 19 + ["failed_to_resize"])})
    s = summarise(assign_steps(m, STEPS[1:], 0.0, 0.0), STEPS[1:])
    assert s["steps"]["2017"] == {"rows": 20, "download_failed": 3, "duplicate_of_test": 0,
                                  "train": 17, "val": 0, "test": 0}
    assert s["steps"]["2018"]["download_failed"] == 1 and s["download_failed"] == 4


def test_training_duplicates_of_any_test_image_are_removed_and_counted():
    keys = [f"k{i}" for i in range(400)]
    m = pd.DataFrame({"key": keys, "timestamp": ["2017-03-01T00:00:00Z"] * 200 + ["2018-03-01T00:00:00Z"] * 200,
                      "sha256": [f"h{i}" for i in range(400)]})
    a = assign_steps(m, STEPS[1:], 0.0, 0.2)
    test_rows = a.index[a["split"] == "test"]
    train_rows = a.index[a["split"] == "train"]
    # three training images copy test images: one of their own step, two of the other step
    same = next(i for i in train_rows if i < 200)
    other = [i for i in train_rows if i >= 200][:2]
    src = [next(i for i in test_rows if i < 200), next(i for i in test_rows if i < 200), next(i for i in test_rows if i >= 200)]
    for dst, s_ in zip([same, *other], src):
        m.loc[dst, "sha256"] = m.loc[s_, "sha256"]
    a = assign_steps(m, STEPS[1:], 0.0, 0.2)
    s = summarise(a, STEPS[1:])
    assert set(a.index[a["excluded"] == "duplicate_of_test"]) == {same, *other}
    assert s["duplicate_of_test"] == 3
    assert s["steps"]["2017"]["duplicate_of_test"] == 1 and s["steps"]["2018"]["duplicate_of_test"] == 2
    # the test copies themselves stay in the test split
    assert (a.loc[src, "split"] == "test").all()
    assert assign_steps(m, STEPS[1:], 0.0, 0.2, dedup_against_test=False)["excluded"].isna().all()


def test_real_data_keeps_the_split_the_manifest_builder_gave():
    m = pd.DataFrame({"key": ["000", "001", "002"], "sample_id": ["uid-a", "uid-b", "uid-c"],
                      "split": ["test", "train", "val"],
                      "timestamp": ["2017-01-01T00:00:00Z", "2017-01-01T00:00:00Z", "2030-01-01T00:00:00Z"]})
    a = assign_steps(m, STEPS, 0.3, 0.3)
    assert list(a["split"]) == ["test", "train", None]


def test_a_naive_timestamp_after_an_offset_one_is_still_utc():
    # pandas 2.3's to_datetime(format="ISO8601") would read the second in the first's offset
    m = pd.DataFrame({"key": ["a", "b"], "timestamp": ["2017-12-31T20:00:00-07:30", "2017-12-31T20:00:00"]})
    a = assign_steps(m, STEPS, 0.0, 0.0)
    assert list(a["step"]) == ["2018", "2017"]


# --------------------------------------------------------------------------------------------
# Per-step shards: an index per split, checked by step_shards; empty train/test splits refused
# --------------------------------------------------------------------------------------------

def test_every_split_gets_an_index_of_its_shards(tiny_world):
    import hashlib
    import json
    import tarfile

    from ticlip_core.data.layout import INDEX_NAME, split_index_digest, step_shards

    for step in ("2014", "2015", "2016"):
        for split in ("train", "val", "test"):
            folder = tiny_world / "steps" / step / split
            index = json.loads((folder / INDEX_NAME).read_text())
            assert (index["step"], index["split"], index["format"]) == (step, split, 1)
            tars = sorted(folder.glob("*.tar"))
            assert sorted(index["shards"]) == [p.name for p in tars] != []
            for tar in tars:
                entry = index["shards"][tar.name]
                with tarfile.open(tar) as tf:
                    keys = {m.name.split(".", 1)[0] for m in tf.getmembers()}
                assert entry == {"samples": len(keys), "bytes": tar.stat().st_size,
                                 "sha256": hashlib.sha256(tar.read_bytes()).hexdigest()}
            assert index["samples"] == sum(e["samples"] for e in index["shards"].values())
            assert index["bytes"] == sum(e["bytes"] for e in index["shards"].values())
            assert step_shards(tiny_world / "steps", step, split) == [str(p) for p in tars]
            assert split_index_digest(tiny_world / "steps", step, split) == \
                hashlib.sha256((folder / INDEX_NAME).read_bytes()).hexdigest()
    # 360 samples minus none excluded: every sample is in exactly one split's index
    total = sum(json.loads((tiny_world / "steps" / st / sp / INDEX_NAME).read_text())["samples"]
                for st in ("2014", "2015", "2016") for sp in ("train", "val", "test"))
    assert total == 360


def test_a_split_folder_without_an_index_fails_saying_how_to_regenerate(tiny_world, tmp_path):
    import shutil

    from ticlip_core.data.layout import ShardIntegrityError, split_index_digest, step_shards

    shutil.copytree(tiny_world / "steps" / "2014" / "val", tmp_path / "2014" / "val")
    (tmp_path / "2014" / "val" / "index.json").unlink()  # as bucketing wrote it before indexes
    with pytest.raises(ShardIntegrityError, match=r"2014/val has no shard index.*rerun the bucket rule"):
        step_shards(tmp_path, "2014", "val")
    with pytest.raises(ShardIntegrityError, match="no shard index"):
        split_index_digest(tmp_path, "2014", "val")
    with pytest.raises(ShardIntegrityError, match=r"2015/train does not exist.*rerun the bucket rule"):
        step_shards(tmp_path, "2015", "train")


def test_an_empty_validation_split_is_indexed_and_reads_as_no_shards(tmp_path):
    from ticlip_core.data.layout import step_shards
    from ticlip_core.data.synthetic import synthesize_world
    from ticlip_core.data.shards import read_shard_metadata
    from ticlip_core.data.bucketing import write_step_shards

    synthesize_world(tmp_path / "shards", seed=0, years=(2014, 2014), samples_per_year=40, samples_per_shard=40,
                     workers=1)
    steps = parse_steps(["2014"])
    assigned = assign_steps(read_shard_metadata(tmp_path / "shards"), steps, 0.0, 0.3)  # val_fraction 0
    out = write_step_shards(assigned, tmp_path / "shards", tmp_path / "steps", 16)
    assert out["2014"]["val"] == [] and step_shards(tmp_path / "steps", "2014", "val") == []
    assert step_shards(tmp_path / "steps", "2014", "train") == out["2014"]["train"] != []


@pytest.mark.parametrize("val, test, empty", [(0.0, 0.0, "test"), (0.5, 0.5, "train")])
def test_a_step_with_an_empty_train_or_test_split_is_refused_before_writing(tmp_path, val, test, empty):
    from ticlip_core.data.bucketing import write_step_shards

    m = pd.DataFrame({"key": [f"k{i}" for i in range(30)],
                      "timestamp": ["2015-01-01T00:00:00Z"] * 10 + ["2017-01-01T00:00:00Z"] * 20})
    steps = parse_steps(["2014-2016", "2017"])
    assigned = assign_steps(m, steps, val, test)
    counts = assigned[assigned["step"] == "2017"]["split"].value_counts()
    message = (rf"step '2017': the {empty} split is empty \(train {counts.get('train', 0)}, "
               rf"val {counts.get('val', 0)}, test {counts.get('test', 0)} of the step's 20 rows")
    with pytest.raises(ValueError, match=message):
        write_step_shards(assigned, tmp_path / "no-shards-needed", tmp_path / "steps", 10)
    assert not (tmp_path / "steps").exists()  # refused before anything was written
