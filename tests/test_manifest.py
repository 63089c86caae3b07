"""build_manifest: every row lands in a step or is excluded with its reason; splits match split_of_key;
write_manifest writes the same tables."""
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ticlip_core.data.bucketing import parse_steps, split_of_key
from ticlip_core.data.bucketing import split_indices
from ticlip_core.data.download import source_renames
from ticlip_core.data import manifest
from ticlip_core.data.manifest import REASONS, build_manifest, write_manifest
from ticlip_core.data.metadata import PRESETS, read_metadata
from ticlip_core.data.timestamps import STR_DTYPE

STEPS = parse_steps(["2014-2015", "2016", "2017-2018"])
COLUMNS = {"url": "url", "caption": "caption", "id": "id"}


def build(meta, steps=STEPS, columns=COLUMNS, timestamp=None, val=0.05, test=0.1, url_policy=None):
    return build_manifest(meta, steps=steps, columns=columns, timestamp=timestamp or {"column": "ts", "unit": "auto"},
                          val_fraction=val, test_fraction=test, url_policy=url_policy)


def metadata(n=3000, seed=0) -> pd.DataFrame:
    """n rows over 2013..2019 in mixed timestamp formats, plus one row per exclusion reason."""
    rng = np.random.default_rng(seed)
    years = 2013 + np.arange(n) % 7
    secs = np.array([np.datetime64(f"{y}-03-01", "s").astype(np.int64) for y in years]) + rng.integers(0, 200 * 86400, n)
    fmt = np.arange(n) % 4
    ts = np.where(fmt == 0, np.char.add(np.datetime_as_string(secs.astype("M8[s]"), unit="s"), "Z"),
                  np.where(fmt == 1, secs.astype(str), np.where(fmt == 2, (secs * 1000).astype(str), years.astype(str))))
    meta = pd.DataFrame({"id": [f"k{i:06d}" for i in range(n)], "url": [f"http://x.example/{i}.jpg" for i in range(n)],
                         "caption": [f"caption {i}" for i in range(n)], "ts": ts.astype(object)})
    meta.loc[1, "url"] = None
    meta.loc[2, "url"] = "  "
    meta.loc[3, "id"] = None
    meta.loc[4, "ts"] = None
    meta.loc[5, "ts"] = ""
    meta.loc[6, "ts"] = "not a date"
    meta.loc[9, "id"] = meta.loc[8, "id"]     # rows 8 (2014) and 9 (2015): 9 is the duplicate
    return meta


def expected_reasons(meta: pd.DataFrame) -> dict:
    year = 2013 + meta.index % 7
    outside = ((year == 2013) | (year == 2019)) & ~meta.index.isin(range(1, 7))
    return {"missing_url": 2, "url_malformed": 0, "url_scheme_refused": 0, "url_host_refused": 0,
            "url_host_unresolved": 0, "missing_id": 1, "missing_timestamp": 2, "unparseable_timestamp": 1,
            "no_year_for_key": 0, "duplicate_id": 1, "outside_steps": int(outside.sum())}


def test_counts_per_reason_and_nothing_lost():
    meta = metadata()
    prepared, excluded, summary = build(meta)
    assert summary["rows_in"] == len(meta) == len(prepared) + len(excluded)
    assert summary["excluded"] == expected_reasons(meta)
    assert excluded["reason"].value_counts().to_dict() == {k: v for k, v in expected_reasons(meta).items() if v}
    assert excluded.loc[excluded["id"] == "k000008", "reason"].tolist() == ["duplicate_id"]
    assert prepared.loc[prepared["id"] == "k000008", "timestamp"].str.startswith("2014").all()  # first kept
    assert prepared["sample_id"].is_unique and "k000008" in set(prepared["sample_id"])
    assert sum(s["rows"] for s in summary["steps"].values()) == summary["rows_prepared"] == len(prepared)
    for name, s in summary["steps"].items():
        assert s["rows"] == s["train"] + s["val"] + s["test"] == (prepared["step"] == name).sum()
    assert summary["years_found"] == [2013, 2019]
    # input order kept; all input columns in both outputs
    assert prepared["sample_id"].tolist() == sorted(prepared["sample_id"])
    assert list(prepared.columns) == ["id", "url", "caption", "ts", "timestamp", "sample_id", "step", "split"]
    assert list(excluded.columns) == ["id", "url", "caption", "ts", "reason", "reason_detail"]
    assert set(excluded["reason"]) <= set(REASONS) and excluded["reason_detail"].isna().all()
    assert summary["url_policy"] == {"allowed_schemes": ["http", "https"], "allow_private_hosts": False,
                                     "resolve_hostnames": False}
    json.dumps(summary)


def test_steps_and_timestamps_are_right():
    meta = metadata()
    prepared, _, _ = build(meta)
    year = prepared["timestamp"].str.slice(0, 4).astype(int)
    expected = np.select([year <= 2015, year == 2016], ["2014-2015", "2016"], "2017-2018")
    assert (prepared["step"].to_numpy() == expected).all()
    assert prepared["timestamp"].str.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ").all()
    row = prepared.set_index("sample_id").loc["k000017"]           # 17 % 4 == 1: epoch seconds
    assert row["timestamp"] == pd.Timestamp(int(row["ts"]), unit="s").strftime("%Y-%m-%dT%H:%M:%SZ")


def test_split_equals_split_of_key():
    prepared, _, summary = build(metadata(), val=0.05, test=0.1)
    expected = [split_of_key(k, 0.05, 0.1) for k in prepared["sample_id"]]
    assert prepared["split"].tolist() == expected
    keys = [f"key-{i}" for i in range(20000)] + ["", "ü", "0"]
    for val, test in ((0.0, 0.0), (0.05, 0.1), (0.3, 0.3), (0.0, 0.999)):
        got = np.array(["train", "val", "test"])[split_indices(keys, val, test)]
        assert got.tolist() == [split_of_key(k, val, test) for k in keys]


def test_split_is_a_function_of_the_key_only():
    meta = metadata()
    a, _, _ = build(meta)
    b, _, _ = build(meta.sample(frac=1.0, random_state=4).reset_index(drop=True))
    a, b = a.set_index("sample_id")["split"], b.set_index("sample_id")["split"]
    common = a.index.intersection(b.index)
    assert len(common) >= len(a) - 1               # only the duplicated id may land differently
    assert (a[common] == b[common]).all()


def test_url_is_the_key_without_an_id_column_and_timestamp_column_is_kept():
    meta = metadata().drop(columns="id").rename(columns={"ts": "timestamp"})
    prepared, excluded, summary = build(meta, columns={"url": "url", "caption": "caption", "id": None},
                                        timestamp={"column": "timestamp"})
    assert (prepared["sample_id"] == prepared["url"]).all()
    assert {"timestamp", "timestamp_raw"} <= set(prepared.columns)
    assert summary["excluded"]["missing_id"] == 0 and summary["excluded"]["duplicate_id"] == 0
    assert "timestamp" in excluded.columns and "timestamp_raw" not in excluded.columns


def test_empty_step_names_it_and_the_years_found():
    with pytest.raises(ValueError, match=r"2020 \(0 rows, 0 train\).*2013-2019"):
        build(metadata(), steps=parse_steps(["2014", "2020"]))
    meta = metadata(n=40)
    with pytest.raises(ValueError, match="2015.*0 train"):     # rows, but all land in val/test
        build(meta, steps=parse_steps(["2015"]), val=0.0, test=0.999)


def test_missing_columns_and_bad_config():
    meta = metadata(n=50)
    with pytest.raises(ValueError, match=r"columns.url='download'.*columns present: id, url, caption, ts"):
        build(meta, columns={"url": "download", "caption": "caption", "id": "id"})
    with pytest.raises(ValueError, match=r"timestamp.column='created'"):
        build(meta, timestamp={"column": "created"})
    with pytest.raises(ValueError, match="timestamp.unit 'days'"):
        build(meta, timestamp={"column": "ts", "unit": "days"})
    with pytest.raises(ValueError, match="must be >= 0 and sum to less than 1"):
        build(meta, val=0.6, test=0.5)
    with pytest.raises(ValueError, match="not both"):
        build(meta, timestamp={"column": "ts", "key_to_year": "x.csv"})
    with pytest.raises(ValueError, match="already has column.*step"):
        build(meta.assign(step=1))


def random_uids(n, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.bytes(16).hex() for _ in range(n)]


def test_key_to_year_from_uid_files_and_tables(tmp_path):
    uids = random_uids(400)
    years = 2014 + np.arange(400) % 4                                     # 2014..2017
    meta = pd.DataFrame({"uid": uids + ["nothex", random_uids(1, seed=5)[0]],
                         "url": [f"http://x.example/{i}" for i in range(402)], "text": ["c"] * 402})
    folder = tmp_path / "uid_years"
    folder.mkdir()
    for y in range(2014, 2018):
        pairs = np.array([(int(u[:16], 16), int(u[16:32], 16)) for u, uy in zip(uids, years) if uy == y], np.dtype("u8,u8"))
        np.save(folder / f"{y}.npy", np.sort(pairs))
    preset = PRESETS["datacomp"]
    columns = {k: preset[k] for k in ("url", "caption", "id")}
    steps = parse_steps(["2014-2015", "2016-2017"])
    for source in (folder, str(folder / "*.npy").replace("*.npy", ""), {y: folder / f"{y}.npy" for y in range(2014, 2018)}):
        prepared, excluded, summary = build(meta, steps=steps, columns=columns, timestamp={"key_to_year": source})
        assert summary["excluded"]["no_year_for_key"] == 2 and len(prepared) == 400
        assert (prepared["timestamp"] == [f"{y}-01-01T00:00:00Z" for y in years]).all()
    table = pd.DataFrame({"key": uids, "year": years})
    table.to_parquet(tmp_path / "years.parquet")
    prepared, _, summary = build(meta, steps=steps, columns=columns, timestamp={"key_to_year": tmp_path / "years.parquet"})
    assert summary["excluded"]["no_year_for_key"] == 2
    assert prepared["step"].tolist() == ["2014-2015" if y <= 2015 else "2016-2017" for y in years]
    with pytest.raises(ValueError, match="needs columns.id"):
        build(meta, steps=steps, columns={**columns, "id": None}, timestamp={"key_to_year": folder})


def test_presets_end_to_end(tmp_path):
    yfcc = pd.DataFrame({"photoid": [1, 2, 3, 4], "dateuploaded": [1420070400, 1451606400, 1262304000, None],
                         "title": ["a", "b", "c", "d"], "description": ["", "", "", ""],
                         "downloadurl": [f"http://y.example/{i}.jpg" for i in range(4)]})
    yfcc.to_parquet(tmp_path / "y.parquet", index=False)
    redcaps = {"info": {}, "annotations": [
        {"image_id": f"r{i}", "author": "u", "url": f"https://i.redd.it/{i}.jpg", "raw_caption": "X", "caption": "x",
         "subreddit": "pics", "score": 1, "created_utc": float(ts), "permalink": "/p"}
        for i, ts in enumerate([1420070400, 1451606400, 1262304000])]}
    (tmp_path / "r.json").write_text(json.dumps(redcaps))
    for name, path in (("yfcc15m", "y.parquet"), ("redcaps", "r.json")):
        p = PRESETS[name]
        prepared, excluded, summary = build(
            read_metadata(tmp_path / path), steps=parse_steps(["2015", "2016"]),
            columns={k: p[k] for k in ("url", "caption", "id")},
            timestamp={"column": p["timestamp_column"], "unit": p["timestamp_unit"]}, val=0.0, test=0.0)
        assert prepared["timestamp"].tolist() == ["2015-01-01T00:00:00Z", "2016-01-01T00:00:00Z"]
        assert summary["excluded"]["outside_steps"] == 1
    assert prepared["sample_id"].tolist() == ["r0", "r1"]


# --------------------------------------------------------------------------- the download policy

REFUSED = {  # row -> (url, reason, words the detail must hold)
    10: ("file:///etc/passwd", "url_scheme_refused", "'file'"),
    11: ("ftp://ftp.example/a.jpg", "url_scheme_refused", "'ftp'"),
    12: ("data:image/png;base64,iVBORw0KGgo=", "url_scheme_refused", "'data'"),
    13: ("http://127.0.0.1:8000/a.jpg", "url_host_refused", "loopback"),
    14: ("http://169.254.169.254/latest/meta-data/", "url_host_refused", "link-local"),
    15: ("https://10.1.2.3/a.jpg", "url_host_refused", "private"),
    16: ("http://[::1]/a.jpg", "url_host_refused", "loopback"),
    17: ("http://user@localhost/a.jpg", "url_host_refused", "loopback name"),
    18: ("http://[::1/a.jpg", "url_malformed", "unclosed"),
    19: ("just some words", "url_malformed", "no scheme"),
}


def with_refused_urls(meta: pd.DataFrame) -> pd.DataFrame:
    meta = meta.copy()
    for i, (url, _, _) in REFUSED.items():
        meta.loc[i, "url"] = url
    meta.loc[2, "url"] = " \t "              # blank: missing_url, not url_malformed
    return meta


def test_refused_urls_are_quarantined_with_their_reason_and_counted():
    meta = with_refused_urls(metadata())
    prepared, excluded, summary = build(meta)
    assert summary["rows_in"] == len(meta) == len(prepared) + len(excluded)
    assert summary["rows_prepared"] + sum(summary["excluded"].values()) == len(meta)
    got = excluded.set_index("id")
    for i, (url, reason, words) in REFUSED.items():
        row = got.loc[f"k{i:06d}"]
        assert (row["url"], row["reason"]) == (url, reason), i
        assert words in row["reason_detail"], (i, row["reason_detail"])
    assert not prepared["url"].isin([u for u, _, _ in REFUSED.values()]).any()
    expected = expected_reasons(meta)
    # the refused rows take precedence over their other reasons (outside_steps for 2013 rows)
    refused_outside = sum(1 for i in REFUSED if (2013 + i % 7) in (2013, 2019))
    expected["outside_steps"] -= refused_outside
    for reason in ("url_scheme_refused", "url_host_refused", "url_malformed"):
        expected[reason] = sum(r == reason for _, r, _ in REFUSED.values())
    assert summary["excluded"] == expected
    assert excluded["reason"].value_counts().to_dict() == {k: v for k, v in expected.items() if v}
    assert excluded["reason_detail"].notna().sum() == len(REFUSED)     # only refusals have a detail


def test_a_refused_row_does_not_claim_its_id():
    """Row 9 repeats row 8's id; with row 8's URL refused, row 9 is the one kept."""
    meta = metadata()
    meta.loc[8, "url"] = "http://192.168.0.10/x.jpg"
    prepared, excluded, summary = build(meta)
    assert excluded.loc[excluded["id"] == "k000008", "reason"].tolist() == ["url_host_refused"]
    assert summary["excluded"]["duplicate_id"] == 0 and "k000008" in set(prepared["sample_id"])


def test_allowing_private_hosts_and_other_schemes():
    meta = with_refused_urls(metadata())
    _, excluded, summary = build(meta, url_policy={"allow_private_hosts": True})
    assert summary["excluded"]["url_host_refused"] == 0 and summary["excluded"]["url_scheme_refused"] == 3
    assert summary["url_policy"]["allow_private_hosts"] is True
    _, _, summary = build(meta, url_policy={"allowed_schemes": ["HTTP", "https", "ftp"]})
    assert summary["excluded"]["url_scheme_refused"] == 2 and summary["excluded"]["url_host_refused"] == 5
    assert summary["url_policy"]["allowed_schemes"] == ["http", "https", "ftp"]


def test_reason_detail_is_a_column_the_metadata_may_not_have():
    with pytest.raises(ValueError, match="already has column.*reason_detail"):
        build(metadata(n=50).assign(reason_detail="x"))


def written_as_before(frame: pd.DataFrame, path) -> pa.Table:
    """``frame`` as ``DataFrame.to_parquet`` writes it, read back."""
    frame.to_parquet(path, index=False)
    return pq.read_table(path)


@pytest.mark.parametrize("text_dtype", [object, STR_DTYPE])
def test_write_manifest_files_hold_build_manifests_tables(tmp_path, monkeypatch, text_dtype):
    """The files read back as build_manifest's tables written by to_parquet (values, column
    order and names, Arrow types, pandas dtypes), renames, extra columns and refusals included;
    the prepared rows are hashed and written in row groups (here of 500 rows)."""
    monkeypatch.setattr(manifest, "_ROW_GROUP", 500)
    meta = with_refused_urls(metadata())
    meta["timestamp"] = meta["ts"]                                  # kept as timestamp_raw
    meta["sha256"] = [f"{i:064x}" for i in range(len(meta))]         # a column img2dataset writes itself
    meta["width"] = pd.array(np.where(np.arange(len(meta)) % 5 == 0, None, np.arange(len(meta))), dtype="Int64")
    meta["when"] = pd.Timestamp("2020-01-01", tz="UTC") + pd.to_timedelta(np.arange(len(meta)), unit="s")
    for col in ("id", "url", "caption", "ts", "timestamp", "sha256"):
        meta[col] = meta[col].astype(text_dtype)
    rename = source_renames(meta.columns, "url", "caption")
    assert rename == {"sha256": "source_sha256", "width": "source_width"}
    kwargs = dict(steps=STEPS, columns=COLUMNS, timestamp={"column": "ts", "unit": "auto"}, val_fraction=0.05,
                  test_fraction=0.1)
    prepared, excluded, summary = build_manifest(meta, **kwargs)
    got = write_manifest(meta, tmp_path / "p.parquet", tmp_path / "e.parquet", rename=rename, **kwargs)
    assert got == summary
    for name, frame in (("p", prepared.rename(columns=rename)), ("e", excluded)):
        expected = written_as_before(frame, tmp_path / f"{name}_before.parquet")
        written = pq.read_table(tmp_path / f"{name}.parquet")
        assert written.schema.equals(expected.schema, check_metadata=True), name
        assert written.equals(expected), name
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / f"{name}.parquet"),
                                      pd.read_parquet(tmp_path / f"{name}_before.parquet"), check_exact=True)
    assert "timestamp_raw" in written_as_before(prepared, tmp_path / "x.parquet").column_names
    assert pq.ParquetFile(tmp_path / "p.parquet").metadata.num_row_groups == -(-len(prepared) // 500)


def test_write_manifest_options_and_bad_rename(tmp_path):
    """Random hex ids are stored uncompressed, text that compresses with snappy; a rename of a
    column the table lacks fails before anything is written."""
    n = 3000
    meta = metadata(n).assign(id=random_uids(n), caption=[f"a photo of a cat number {i % 50}" for i in range(n)])
    kwargs = dict(steps=STEPS, columns=COLUMNS, timestamp={"column": "ts", "unit": "auto"}, val_fraction=0.05,
                  test_fraction=0.1)
    write_manifest(meta, tmp_path / "p.parquet", tmp_path / "e.parquet", **kwargs)
    row_group = pq.ParquetFile(tmp_path / "p.parquet").metadata.row_group(0)
    codecs = {row_group.column(j).path_in_schema: row_group.column(j).compression for j in range(row_group.num_columns)}
    assert codecs["id"] == codecs["sample_id"] == "UNCOMPRESSED" and codecs["caption"] == "SNAPPY"
    with pytest.raises(ValueError, match="rename names column.*sha256"):
        write_manifest(meta, tmp_path / "p2.parquet", tmp_path / "e2.parquet", rename={"sha256": "x"}, **kwargs)
    with pytest.raises(ValueError, match="repeated column names"):
        write_manifest(meta, tmp_path / "p2.parquet", tmp_path / "e2.parquet", rename={"caption": "url"}, **kwargs)
    assert not (tmp_path / "p2.parquet").exists() and not (tmp_path / "e2.parquet").exists()


def test_write_manifest_without_training_rows_leaves_no_file(tmp_path):
    with pytest.raises(ValueError, match="without training rows"):
        write_manifest(metadata(n=200), tmp_path / "p.parquet", tmp_path / "e.parquet", steps=parse_steps(["2030"]),
                       columns=COLUMNS, timestamp={"column": "ts", "unit": "auto"}, val_fraction=0.05, test_fraction=0.1)
    assert list(tmp_path.iterdir()) == []
