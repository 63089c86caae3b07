"""Resolving a real dataset's columns (config > preset > defaults), and class labels for evaluation."""
import pandas as pd
import pytest

from ticlip_core.class_labels import key_table_labels, read_classnames, read_key_to_class
from ticlip_core.data.source import metadata_spec


def test_presets_fill_what_the_config_leaves_out():
    spec = metadata_spec({"preset": "yfcc15m"})
    assert spec["columns"] == {"url": "downloadurl", "caption": "title", "id": "photoid"}
    assert spec["timestamp"] == {"column": "dateuploaded", "unit": "s", "key_to_year": None}
    spec = metadata_spec({"preset": "redcaps", "columns": {"caption": "raw_caption"}, "timestamp": {"unit": "auto"}})
    assert spec["columns"]["caption"] == "raw_caption" and spec["columns"]["url"] == "url"
    assert spec["timestamp"]["column"] == "created_utc" and spec["timestamp"]["unit"] == "auto"
    assert metadata_spec({})["columns"] == {"url": "url", "caption": "caption", "id": None}


def test_datacomp_takes_years_from_uid_files():
    spec = metadata_spec({"preset": "datacomp", "timestamp": {"key_to_year": "/tic/uids"}})
    assert spec["columns"]["id"] == "uid" and spec["timestamp"]["column"] is None
    with pytest.raises(ValueError, match="set data.timestamp.key_to_year"):
        metadata_spec({"preset": "datacomp"})
    with pytest.raises(ValueError, match="key_to_year needs data.columns.id"):
        metadata_spec({"timestamp": {"key_to_year": "/tic/uids"}})


def test_key_to_class_by_index_or_name(tmp_path):
    names = ["cat", "dog", "tram"]
    pd.DataFrame({"key": ["a", "b"], "class": [2, 0]}).to_parquet(tmp_path / "i.parquet")
    pd.DataFrame({"key": ["a", "b"], "class": ["tram", "cat"]}).to_csv(tmp_path / "n.csv", index=False)
    assert read_key_to_class(tmp_path / "i.parquet", names) == {"a": 2, "b": 0}
    assert read_key_to_class(tmp_path / "n.csv", names) == {"a": 2, "b": 0}
    (tmp_path / "names.txt").write_text("cat\ndog\n\ntram\n")
    labels = key_table_labels({"key_to_class": str(tmp_path / "n.csv"), "classnames": str(tmp_path / "names.txt"),
                               "templates": None}, ["a photo of a {}."])
    assert labels.classnames == names and labels.templates == ["a photo of a {}."]
    assert labels.labels_of({"sample_id": "a"}) == {2} and labels.labels_of({"sample_id": "zz"}) is None


def test_bad_class_tables_are_named(tmp_path):
    names = ["cat", "dog"]
    pd.DataFrame({"key": ["a"], "class": [5]}).to_csv(tmp_path / "big.csv", index=False)
    with pytest.raises(ValueError, match="class 5 of key 'a' is not an index into the 2 class names"):
        read_key_to_class(tmp_path / "big.csv", names)
    pd.DataFrame({"key": ["a"], "class": ["lion"]}).to_csv(tmp_path / "lion.csv", index=False)
    with pytest.raises(ValueError, match=r"\['lion'\] are not in data.classification.classnames"):
        read_key_to_class(tmp_path / "lion.csv", names)
    pd.DataFrame({"key": ["a", "a"], "class": [0, 1]}).to_csv(tmp_path / "dup.csv", index=False)
    with pytest.raises(ValueError, match="key 'a' appears twice"):
        read_key_to_class(tmp_path / "dup.csv", names)
    pd.DataFrame({"id": ["a"], "label": [0]}).to_csv(tmp_path / "cols.csv", index=False)
    with pytest.raises(ValueError, match=r"missing column\(s\) \['class', 'key'\]"):
        read_key_to_class(tmp_path / "cols.csv", names)
    with pytest.raises(FileNotFoundError, match="classnames file"):
        read_classnames(str(tmp_path / "none.txt"))
