"""Timestamp sources: every accepted format and unit, DataComp uids and year files, metadata readers."""
import json

import numpy as np
import pandas as pd
import pytest

from ticlip_core.data.metadata import PRESETS, read_metadata
from ticlip_core.data.timestamps import STR_DTYPE, parse_timestamps
from ticlip_core.data.uid_years import read_key_year_table, read_uid_year_files, uids_to_pairs, years_of_uids

MISSING, BAD = "missing_timestamp", "unparseable_timestamp"


def utc(s: str) -> pd.Timestamp:
    return pd.Timestamp(s, tz="UTC")


def parsed(values, unit="auto", dtype=object):
    ts, reason = parse_timestamps(pd.Series(values, dtype=dtype), unit)
    assert str(ts.dtype) == "datetime64[ns, UTC]"
    assert (ts.isna() == reason.notna()).all()
    return ts.tolist(), reason.tolist()


# --------------------------------------------------------------------------- formats

@pytest.mark.parametrize("value, expected", [
    ("2015-06-01T12:00:00Z", "2015-06-01T12:00:00"),
    ("2015-06-01T12:00:00+02:00", "2015-06-01T10:00:00"),
    ("2016-12-31T23:30:00-02:00", "2017-01-01T01:30:00"),
    ("2015-06-01T12:00:00+0530", "2015-06-01T06:30:00"),
    ("2015-06-01", "2015-06-01T00:00:00"),
    ("2015-06-01 12:34:56", "2015-06-01T12:34:56"),
    ("2015-06-01T12:34", "2015-06-01T12:34:00"),
    ("2015-06-01T12:00:00.250Z", "2015-06-01T12:00:00.250"),
    ("  2015-06-01T12:00:00Z \t", "2015-06-01T12:00:00"),
    ("2015-06", "2015-06-01T00:00:00"),               # a rarer ISO shape: pandas' parser
    ("2016-02-29", "2016-02-29T00:00:00"),
    (1433160000, "2015-06-01T12:00:00"),               # epoch seconds
    ("1433160000", "2015-06-01T12:00:00"),
    (1433160000.5, "2015-06-01T12:00:00.5"),
    (1433160000123, "2015-06-01T12:00:00.123"),        # epoch milliseconds
    ("1433160000123", "2015-06-01T12:00:00.123"),
    (2015, "2015-01-01"),                              # bare year
    ("2015", "2015-01-01"),
    (" 2015 ", "2015-01-01"),
    (2015.0, "2015-01-01"),
    (-1e9, "1938-04-24T22:13:20"),                     # negative epoch seconds
])
def test_auto_accepts_each_format(value, expected):
    ts, reason = parsed([value])
    assert reason == [None]
    assert ts[0] == utc(expected)


@pytest.mark.parametrize("value, reason", [
    (None, MISSING), (np.nan, MISSING), (pd.NA, MISSING), ("", MISSING), ("   ", MISSING),
    ("garbage", BAD), ("2015-02-30", BAD), ("2015-02-30T00:00:00Z", BAD), ("2015-13-01", BAD),
    ("2015-06-01T25:00:00Z", BAD), ("1850-01-01", BAD), ("2101-01-01T00:00:00Z", BAD),
    (1850, BAD), (9999, BAD), (-2015, BAD), (2015.5, BAD), (500, BAD), (0, BAD),
    (float("inf"), BAD), ("inf", BAD), ("-inf", BAD), ("nan", BAD), (1e20, BAD),
    ("2015-06-01T12:00:00,5Z", BAD), ("June 1, 2015", BAD),
])
def test_auto_rejects_with_the_reason(value, reason):
    ts, got = parsed([value])
    assert got == [reason] and pd.isna(ts[0])


def test_mixed_column_keeps_order_and_index():
    values = pd.Series(["2015-01-01T00:00:00Z", 1420070400, "1420070400000", None, "x", 2015, "2015-01-01T02:00:00+02:00"],
                       index=[10, 11, 12, 13, 14, 15, 16], dtype=object)
    ts, reason = parse_timestamps(values)
    assert list(ts.index) == list(values.index) and list(reason.index) == list(values.index)
    jan1 = utc("2015-01-01")
    assert ts.tolist()[:3] == [jan1] * 3 and ts[15] == jan1 and ts[16] == jan1
    assert reason.tolist() == [None, None, None, MISSING, BAD, None, None]


def test_column_dtypes():
    # numeric, nullable integer, arrow strings, python strings, datetimes naive and aware
    assert parsed([1420070400, 2015, np.nan], dtype=float)[1] == [None, None, MISSING]
    assert parsed([1420070400, 2015, None], dtype="Int64")[0][:2] == [utc("2015-01-01")] * 2
    assert parsed(["2015", None, "x"], dtype=STR_DTYPE)[1] == [None, MISSING, BAD]
    assert parsed(["2015", None, ""], dtype="string")[1] == [None, MISSING, MISSING]
    naive = pd.Series(pd.to_datetime(["2015-06-01 12:00", None, "1800-01-01 00:00"]))
    ts, reason = parse_timestamps(naive)
    assert ts[0] == utc("2015-06-01T12:00") and reason.tolist() == [None, MISSING, BAD]
    aware = pd.Series(pd.to_datetime(["2015-06-01 12:00"]).tz_localize("Europe/Berlin"))
    assert parse_timestamps(aware)[0][0] == utc("2015-06-01T10:00")


def test_units():
    values = ["2015-06-01T00:00:00Z", 1433116800, "1433116800000", 2015, "2015", "junk"]
    ts, reason = parsed(values, "iso")
    assert reason == [None, BAD, BAD, None, None, BAD]      # "2015" is a valid ISO-8601 year
    ts, reason = parsed(values, "s")
    assert reason == [BAD, None, BAD, None, None, BAD]      # 1433116800000 s is past 2100
    assert ts[1] == utc("2015-06-01") and ts[3] == utc("1970-01-01T00:33:35")
    ts, reason = parsed(values, "ms")
    assert reason == [BAD, None, None, None, None, BAD]
    assert ts[2] == utc("2015-06-01") and ts[1] == utc("1970-01-17T14:05:16.800")
    ts, reason = parsed(values, "year")
    assert reason == [BAD, BAD, BAD, None, None, BAD]
    assert parsed([2015.5], "year")[1] == [BAD]
    assert parsed([1433116800], "iso", dtype="int64")[1] == [BAD]
    with pytest.raises(ValueError, match="unit 'days'"):
        parse_timestamps(pd.Series([1]), "days")


def test_fast_path_agrees_with_pandas():
    rng = np.random.default_rng(1)
    secs = rng.integers(np.datetime64("1901-01-01", "s").astype(int), np.datetime64("2100-06-01", "s").astype(int), 3000)
    base = np.datetime_as_string(secs.astype("M8[s]"), unit="s")
    frac = np.char.add(base, ".123456")
    values = np.concatenate([base, np.char.add(base, "Z"), np.char.add(base, "-07:30"), frac,
                             np.char.replace(base, "T", " "), [b[:10] for b in base]]).astype(object)
    ts, reason = parse_timestamps(pd.Series(values))
    assert reason.isna().all()
    # pandas, one shape at a time (one call on mixed naive/offset strings misreads the naive ones)
    for i in range(0, len(values), 3000):
        chunk = pd.Series(values[i:i + 3000])
        assert (ts[i:i + 3000].to_numpy() == pd.to_datetime(chunk, format="ISO8601", utc=True).to_numpy()).all()


def test_naive_after_offset_in_the_slow_path_is_utc():
    # 10 fraction digits: not a fast-path shape, so both go to pandas
    values = ["2015-06-01T12:00:00.0000000001-07:30", "2015-06-01T12:00:00.0000000001", "2015-06"]
    ts, reason = parsed(values)
    assert reason == [None, None, None]
    assert ts[0] == utc("2015-06-01T19:30:00") and ts[1] == utc("2015-06-01T12:00:00")


# --------------------------------------------------------------------------- uids

def reference_pairs(uids):
    """TiC-DataComp's own conversion."""
    return np.array([(int(uid[:16], 16), int(uid[16:32], 16)) for uid in uids], np.dtype("u8,u8"))


def random_uids(n, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.bytes(16).hex() for _ in range(n)]


def test_uids_to_pairs_matches_the_reference():
    uids = random_uids(500) + ["0" * 32, "f" * 32, "ABCDEF0123456789abcdef0123456789"]
    pairs, valid = uids_to_pairs(pd.Series(uids))
    assert valid.all() and pairs.dtype == np.dtype("u8,u8")
    assert (pairs == reference_pairs(uids)).all()
    pairs_arrow, _ = uids_to_pairs(pd.Series(uids, dtype=STR_DTYPE))
    assert (pairs_arrow == pairs).all()


def test_invalid_uids_are_masked():
    good = random_uids(2, seed=1)
    uids = pd.Series([good[0], "g" * 32, "a" * 31, "a" * 33, None, "", 12345, good[1]], dtype=object)
    pairs, valid = uids_to_pairs(uids)
    assert valid.tolist() == [True, False, False, False, False, False, False, True]
    assert (pairs[[0, 7]] == reference_pairs([good[0], good[1]])).all()
    assert (pairs[~valid]["f0"] == 0).all()


def write_year_files(folder, uids_by_year, name="{}.npy"):
    folder.mkdir(parents=True, exist_ok=True)
    for year, uids in uids_by_year.items():
        np.save(folder / name.format(year), np.sort(reference_pairs(uids)))
    return folder


def test_uid_year_files_round_trip(tmp_path):
    uids = random_uids(300, seed=2)
    by_year = {2014: uids[:100], 2015: uids[100:250], 2016: uids[250:]}
    # same first half, different second halves: the tie-breaking search must tell them apart
    twins = ["00000000000000aa" + f"{i:016x}" for i in (5, 1, 9)]
    by_year[2014] = by_year[2014] + twins[:1]
    by_year[2016] = by_year[2016] + twins[1:]
    folder = write_year_files(tmp_path / "years", by_year, name="uids_{}.npy")
    table_uids, table_years = read_uid_year_files(folder)
    assert len(table_uids) == 303
    assert (np.diff(table_years[np.argsort(table_uids, order=("f0", "f1"))]) != 0).sum() >= 2
    query = pd.Series([uids[0], uids[150], uids[299], random_uids(1, seed=9)[0], "zz", None, *twins,
                       "00000000000000aa" + f"{7:016x}"], index=range(100, 110))
    years = years_of_uids(query, (table_uids, table_years))
    assert str(years.dtype) == "Int64" and list(years.index) == list(query.index)
    assert years.tolist() == [2014, 2015, 2016, pd.NA, pd.NA, pd.NA, 2014, 2016, 2016, pd.NA]
    mapping = {y: folder / f"uids_{y}.npy" for y in by_year}
    assert (read_uid_year_files(mapping)[0] == table_uids).all()


def test_uid_year_file_errors(tmp_path):
    uids = random_uids(20, seed=3)
    folder = write_year_files(tmp_path / "dup", {2014: uids[:12], 2015: uids[10:]})
    with pytest.raises(ValueError, match=f"uid {uids[10]}|uid {uids[11]}") as err:
        read_uid_year_files(folder)
    assert "2014.npy" in str(err.value) and "2015.npy" in str(err.value)

    bad = tmp_path / "dtype"
    bad.mkdir()
    np.save(bad / "2014.npy", np.arange(4, dtype=np.uint64))
    with pytest.raises(ValueError, match=r"2014.npy.*'u8,u8'"):
        read_uid_year_files(bad)

    amb = write_year_files(tmp_path / "amb", {2014: uids[:5]}, name="uids_{}_2015.npy")
    with pytest.raises(ValueError, match="ambiguous"):
        read_uid_year_files(amb)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no \\*.npy"):
        read_uid_year_files(tmp_path / "empty")


def test_key_year_table(tmp_path):
    pd.DataFrame({"key": ["007", "b", "c"], "year": [2014, 2015, 2016]}).to_csv(tmp_path / "t.csv", index=False)
    table = read_key_year_table(tmp_path / "t.csv")
    assert table.to_dict() == {"007": 2014, "b": 2015, "c": 2016}     # leading zeros kept
    pd.DataFrame({"key": [1, 2], "year": [2014, 2015]}).to_parquet(tmp_path / "t.parquet")
    assert read_key_year_table(tmp_path / "t.parquet").to_dict() == {"1": 2014, "2": 2015}
    pd.DataFrame({"id": ["a"], "yr": [2014]}).to_parquet(tmp_path / "cols.parquet")
    with pytest.raises(ValueError, match="missing column.*key, year.*columns present: id, yr"):
        read_key_year_table(tmp_path / "cols.parquet")
    pd.DataFrame({"key": ["a", "b", "a"], "year": [2014, 2015, 2016]}).to_csv(tmp_path / "dup.csv", index=False)
    with pytest.raises(ValueError, match="key 'a' appears more than once"):
        read_key_year_table(tmp_path / "dup.csv")
    pd.DataFrame({"key": ["a", "b"], "year": ["2014", "soon"]}).to_csv(tmp_path / "y.csv", index=False)
    with pytest.raises(ValueError, match="key 'b' has year 'soon'"):
        read_key_year_table(tmp_path / "y.csv")


# --------------------------------------------------------------------------- metadata files

YFCC = pd.DataFrame({"photoid": [101, 102, 103], "dateuploaded": ["1118102400", "1433116800", ""],
                     "title": ["NA", "a cat", "a dog"], "description": ["", "x", "y"],
                     "downloadurl": ["http://a/1.jpg", "http://a/2.jpg", "http://a/3.jpg"]})
REDCAPS = {"info": {"subreddit": "itookapicture"}, "annotations": [
    {"image_id": "abc1", "author": "u1", "url": "https://i.redd.it/abc1.jpg", "raw_caption": "My Cat",
     "caption": "my cat", "subreddit": "itookapicture", "score": 10, "created_utc": 1357018839.0, "permalink": "/r/1"},
    {"image_id": "abc2", "author": "u2", "url": "https://i.redd.it/abc2.jpg", "raw_caption": "Dog",
     "caption": "dog", "subreddit": "itookapicture", "score": 3, "created_utc": 1577836800.0, "permalink": "/r/2"},
]}


def test_read_metadata_formats(tmp_path):
    YFCC.to_csv(tmp_path / "y.csv", index=False)
    YFCC.to_csv(tmp_path / "y.tsv", sep="\t", index=False)
    YFCC.to_parquet(tmp_path / "y.parquet", index=False)
    for name in ("y.csv", "y.tsv"):
        df = read_metadata(tmp_path / name)
        assert df["photoid"].tolist() == ["101", "102", "103"]           # text as stored
        assert df["title"].tolist()[0] == "NA" and pd.isna(df["dateuploaded"][2])
    df = read_metadata(str(tmp_path / "y.parquet"))
    assert df["photoid"].dtype == np.int64 and list(df.columns) == list(YFCC.columns)
    both = read_metadata([tmp_path / "y.parquet", str(tmp_path / "y.c*")])
    assert len(both) == 6 and list(both.index) == list(range(6))
    (tmp_path / "r.json").write_text(json.dumps(REDCAPS))
    red = read_metadata(tmp_path / "r.json")
    assert red["created_utc"].tolist() == [1357018839.0, 1577836800.0] and red["image_id"].tolist() == ["abc1", "abc2"]


def test_read_metadata_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="'.*nothing-\\*.parquet' matched no file"):
        read_metadata(str(tmp_path / "nothing-*.parquet"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_metadata(tmp_path / "absent.csv")
    (tmp_path / "m.xlsx").write_text("x")
    with pytest.raises(ValueError, match="m.xlsx: unknown metadata format"):
        read_metadata(tmp_path / "m.xlsx")
    (tmp_path / "bad.json").write_text(json.dumps({"info": {}}))
    with pytest.raises(ValueError, match="'annotations' list"):
        read_metadata(tmp_path / "bad.json")


def test_presets_parse_their_tables(tmp_path):
    YFCC.to_csv(tmp_path / "y.csv", index=False)
    (tmp_path / "r.json").write_text(json.dumps(REDCAPS))
    for name, path, expected in (("yfcc15m", "y.csv", ["2005-06-07", "2015-06-01", None]),
                                 ("redcaps", "r.json", ["2013-01-01T05:40:39", "2020-01-01"])):
        preset = PRESETS[name]
        df = read_metadata(tmp_path / path)
        assert {preset["url"], preset["caption"], preset["id"], preset["timestamp_column"]} <= set(df.columns)
        ts, _ = parse_timestamps(df[preset["timestamp_column"]], preset["timestamp_unit"])
        assert [None if pd.isna(t) else t for t in ts] == [utc(e) if e else None for e in expected]
