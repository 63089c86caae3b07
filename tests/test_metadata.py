"""Metadata tables: an empty file, or files without rows, fail naming the file."""
import gzip

import pandas as pd
import pytest

from ticlip_core.data.metadata import read_metadata, read_table


@pytest.mark.parametrize("name", ["m.csv", "m.tsv", "m.parquet", "m.jsonl", "m.json"])
def test_an_empty_file_fails_naming_it(tmp_path, name):
    (tmp_path / name).write_bytes(b"")
    with pytest.raises(ValueError, match=rf"{tmp_path / name}: the file is empty \(0 bytes\)"):
        read_metadata(tmp_path / name)


def test_a_compressed_csv_that_is_empty_inside_fails_naming_it(tmp_path):
    path = tmp_path / "m.csv.gz"
    path.write_bytes(gzip.compress(b""))
    with pytest.raises(ValueError, match=rf"{path}: the CSV file holds no header and no rows"):
        read_table(path)


def test_files_without_rows_fail_when_all_are_empty_and_are_named_otherwise(tmp_path, capsys):
    (tmp_path / "header.csv").write_text("url,caption\n")
    pd.DataFrame({"url": pd.Series([], dtype=str), "caption": pd.Series([], dtype=str)}).to_parquet(
        tmp_path / "none.parquet")
    with pytest.raises(ValueError, match=rf"{tmp_path / 'header.csv'}, {tmp_path / 'none.parquet'} hold no rows"):
        read_metadata([tmp_path / "header.csv", tmp_path / "none.parquet"])
    with pytest.raises(ValueError, match=rf"{tmp_path / 'none.parquet'} holds no rows"):
        read_metadata(tmp_path / "none.parquet")

    (tmp_path / "rows.csv").write_text("url,caption\nhttp://a,a cat\n")
    frame = read_metadata([tmp_path / "header.csv", tmp_path / "rows.csv"])
    assert list(frame["caption"]) == ["a cat"]
    assert f"metadata files with no rows (skipped): {tmp_path / 'header.csv'}" in capsys.readouterr().err
