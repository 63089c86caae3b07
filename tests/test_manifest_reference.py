"""The vectorised manifest builder against a row-by-row reference of its documented rules.

build_manifest, parse_to_ns and the URL policy work on whole columns with NumPy over the
strings' bytes (timestamp shapes, URL prefixes, id hashes, block by block). These tests
pin them to plain per-value code: pandas' ISO-8601 parser one value at a time, Python's
``re`` for the URL prefix, ``split_of_key`` for the split, a dict for repeated ids.
"""
import math
import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from ticlip_core.data import manifest, text_bytes, timestamps, url_policy
from ticlip_core.data.bucketing import key_hashes, parse_steps, split_indices, split_of_key
from ticlip_core.data.manifest import REASONS, build_manifest, iso_strings
from ticlip_core.data.timestamps import NAT, STR_DTYPE, parse_to_ns
from ticlip_core.data.url_policy import UrlPolicy, url_prefixes

STEPS = parse_steps(["1930-2015", "2016-2017"])
LO, HI = (int(np.datetime64(d, "ns").astype(np.int64)) for d in ("1900-01-01", "2101-01-01"))

# every kind of timestamp value the auto unit reads, and values it must refuse
TIMESTAMPS = [
    "2015-06-01T12:00:00Z", "2016-03-04T05:06:07", "2017-08-09 10:11:12", "2015-06-01T12:00:00+02:00",
    "2016-12-31T23:30:00-02:00", "2014-01-01T00:30:00+05:45", "2015-06-01T12:00:00+0530", "2015-06-01T12:00:00.250Z",
    "2016-06-01T12:00:00.123456789", "2015-06-01", "2016-06", "2016-02-29T00:00:00Z", "2016-02-29 10:00:00",
    "2015-02-29T00:00:00Z", "2015-02-30 00:00:00", "2015-04-31T10:00:00+02:00", "2015-13-01T00:00:00Z",
    "2015-06-01T24:00:00Z", "2015-06-01T23:60:00Z", "2015-06-01T12:00:00+24:00", "2015-06-01t12:00:00Z",
    "1899-12-31T23:59:59Z", "1900-01-01T00:00:00+01:00", "2100-12-31T23:30:00-01:00", "2101-01-01T00:00:00Z",
    "  2015-06-01T12:00:00Z\t", "\xa02016-06-01T12:00:00+01:00\xa0", "1433160000", 1433160000, "1433160000123",
    1433160000123, 1433160000.5, "1.4331600005e9", "2015", 2015, " 2016 ", 2016.0, -1e9, "-1e9", 500, 2015.5,
    None, np.nan, "", "   ", "garbage", "nan", "inf", "1e20", "June 1, 2015", "2015-06-01T12:00:00,5Z",
    "２０１５-06-01T12:00:00Z", "2015-06-01T12:00:00Z2", "2015-06-01T12:00:00+02:00:00", "1925-05-05T00:00:00Z",
    "2050-01-01 00:00:00",
]
URLS = ["http://x.example/a.jpg", "https://x.example/b", "ftp://x.example/c", "http://127.0.0.1/d",
        "http://169.254.169.254/latest", "no scheme", "http://[::1/x", " \t ", None, "HTTPS://X.EXAMPLE?q=/a#f",
        "http://localhost/x", "http://x.example#frag/x", "  https://x.example/pad  ", "http://ｘ.example/y"]


def auto_number_ns(v: float) -> int:
    """The auto rule for a number, in plain Python."""
    if not math.isfinite(v):
        return NAT
    if v == math.floor(v) and 1000 <= v <= 9999:
        return int((np.datetime64(f"{int(v)}-01-01", "ns")).astype(np.int64)) if 1900 <= v <= 2100 else NAT
    scale = 10**9 if 1e4 <= abs(v) < 1e11 else 10**6 if abs(v) >= 1e11 else None
    if scale is None or not (LO / scale <= v < HI / scale):
        return NAT
    whole = math.floor(v)
    return whole * scale + round((v - whole) * scale)


def reference_ns(value) -> tuple[int, bool]:
    """(UTC ns or NAT, missing) of one value under unit auto, one value at a time."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return NAT, True
    if not isinstance(value, str):
        ns = auto_number_ns(float(value))
    else:
        text = value.strip()
        if not text:
            return NAT, True
        if re.fullmatch(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", text, re.ASCII):
            ns = auto_number_ns(float(text))
        else:
            ts = pd.to_datetime(pd.Series([text]), format="ISO8601", utc=True, errors="coerce")[0]
            ns = NAT if pd.isna(ts) else ts.value
    return (ns if ns == NAT or LO <= ns < HI else NAT), False


def reference_prefix(url: str) -> str:
    return re.match(r"(?s)^(?P<prefix>[^/?#]*(?://[^/?#]*)?)", url.strip()).group("prefix")


def hand_made_table(repeats: int = 3) -> pd.DataFrame:
    """Each timestamp kind with each URL kind, ids with blanks and repeats, in a shuffled order."""
    rng = np.random.default_rng(3)
    rows = []
    for r in range(repeats):
        for i, ts in enumerate(TIMESTAMPS):
            rows.append({"id": f"k{(i * 7 + r) % 61:03d}", "url": URLS[(i + r) % len(URLS)] if r else "http://x.example/",
                         "caption": f"c{i}", "ts": ts})
    rows += [{"id": key, "url": "http://x.example/", "caption": "blank id", "ts": "2015-06-01T12:00:00Z"}
             for key in (None, "  ")]
    return pd.DataFrame(rows).iloc[rng.permutation(len(rows))].reset_index(drop=True)


def reference_manifest(meta: pd.DataFrame, policy: UrlPolicy, val: float, test: float):
    """Reason, timestamp string, step and split of each row, decided row by row."""
    reasons, stamps, steps, splits, seen = [], [], [], [], set()
    for url, key, value in zip(meta["url"], meta["id"], meta["ts"]):
        ns, missing = reference_ns(value)
        url, key = (None if pd.isna(v) else v for v in (url, key))
        verdict = None if url is None or not url.strip() else url_policy._static_verdict(reference_prefix(url), policy)
        year = int(str(np.datetime64(ns, "ns").astype("M8[Y]"))) if ns != NAT else None
        step = next((s.name for s in STEPS if year is not None and s.start <= year <= s.end), None)
        reason = ("missing_url" if url is None or not url.strip() else verdict.reason if verdict
                  else "missing_id" if key is None or not key.strip() else "missing_timestamp" if missing
                  else "unparseable_timestamp" if ns == NAT else "duplicate_id" if key in seen else None)
        if reason is None:
            seen.add(key)
            reason = None if step else "outside_steps"
        reasons.append((reason, verdict.detail if verdict and reason == verdict.reason else None))
        stamps.append(pd.Timestamp(ns, unit="ns").strftime("%Y-%m-%dT%H:%M:%SZ") if reason is None else None)
        steps.append(step)
        splits.append(split_of_key(key, val, test) if reason is None else None)
    return reasons, stamps, steps, splits


@pytest.mark.parametrize("dtype", [object, STR_DTYPE])
def test_build_manifest_equals_the_row_by_row_reference(dtype):
    meta = hand_made_table()
    meta = meta.assign(id=meta["id"].astype(dtype), url=meta["url"].astype(dtype))
    policy = UrlPolicy()
    prepared, excluded, summary = build_manifest(meta, steps=STEPS, columns={"url": "url", "caption": "caption", "id": "id"},
                                                 timestamp={"column": "ts", "unit": "auto"}, val_fraction=0.1,
                                                 test_fraction=0.1, url_policy=policy)
    reasons, stamps, steps, splits = reference_manifest(meta, policy, 0.1, 0.1)
    keep = np.array([r is None for r, _ in reasons])
    assert 0 < keep.sum() < len(meta)
    assert {r for r, _ in reasons} - {None} == {r for r in REASONS if r not in ("url_host_unresolved", "no_year_for_key")}
    pd.testing.assert_frame_equal(prepared[meta.columns], meta[keep].reset_index(drop=True))
    pd.testing.assert_frame_equal(excluded[meta.columns], meta[~keep].reset_index(drop=True))
    assert prepared["timestamp"].tolist() == [s for s in stamps if s]
    assert prepared["step"].tolist() == [s for s, k in zip(steps, keep) if k]
    assert prepared["split"].tolist() == [s for s in splits if s]
    assert excluded["reason"].tolist() == [r for r, _ in reasons if r]
    assert excluded["reason_detail"].fillna("-").tolist() == [d or "-" for r, d in reasons if r]
    assert summary["rows_prepared"] == keep.sum()
    assert summary["excluded"] == {r: sum(x == r for x, _ in reasons) for r in REASONS}


def test_each_timestamp_kind_parses_as_one_value_alone():
    values = TIMESTAMPS * 2
    for dtype in (object, STR_DTYPE):
        column = pd.Series(values, dtype=dtype) if dtype is object else \
            pd.Series([v if v is None or isinstance(v, str) else str(v) for v in values], dtype=dtype)
        ns, missing = parse_to_ns(column, "auto")
        expected = [reference_ns(v) for v in column.astype(object).where(column.notna(), None)]
        assert ns.tolist() == [e[0] for e in expected]
        assert missing.tolist() == [e[1] for e in expected]


def mutated_timestamps(n: int, seed: int) -> list[str]:
    """Fixed-shape ISO strings (naive, Z, +hh:mm) with one character replaced in a third of them."""
    rng = np.random.default_rng(seed)
    secs = rng.integers(np.datetime64("1899-12-01", "s").astype(np.int64), np.datetime64("2101-02-01", "s").astype(np.int64), n)
    base = np.datetime_as_string(secs.astype("M8[s]"), unit="s").astype(object)
    values = base + np.array(["", "Z", "+02:00", "-07:30", " "], dtype=object)[rng.integers(0, 5, n)]
    values = np.where(rng.random(n) < 0.5, values, np.char.replace(values.astype(str), "T", " ").astype(object))
    chars = "0123456789-:T Z+x"
    for i in np.flatnonzero(rng.random(n) < 0.35):
        j = rng.integers(0, len(values[i]))
        values[i] = values[i][:j] + chars[rng.integers(0, len(chars))] + values[i][j + 1:]
    return list(values)


def reference_iso_ns(value: str) -> int:
    """unit iso, one value at a time: pandas' ISO-8601 parser, then the 1900-2100 range."""
    ts = pd.to_datetime(pd.Series([value.strip()]), format="ISO8601", utc=True, errors="coerce")[0]
    return NAT if pd.isna(ts) or not LO <= ts.value < HI else ts.value


def test_fixed_shape_timestamps_match_pandas_one_by_one():
    values = mutated_timestamps(1500, seed=1)
    ns, missing = parse_to_ns(pd.Series(values, dtype=STR_DTYPE), "iso")
    assert not missing.any() and 500 < (ns != NAT).sum() < 1450
    assert ns.tolist() == [reference_iso_ns(v) for v in values]


def test_blocks_give_what_small_pieces_give():
    # more rows than one NumPy block: the block edges must not show
    values = mutated_timestamps(80_000, seed=2)
    column = pd.Series(values, dtype=STR_DTYPE)
    ns, missing = parse_to_ns(column, "auto")
    pieces = [parse_to_ns(column.iloc[i:i + 7000], "auto") for i in range(0, len(values), 7000)]
    assert ns.tolist() == np.concatenate([p[0] for p in pieces]).tolist()
    assert missing.tolist() == np.concatenate([p[1] for p in pieces]).tolist()


def random_urls(n: int, seed: int) -> list:
    rng = np.random.default_rng(seed)
    parts = ["a", "b", ":", "/", "?", "#", "//", ".", "é", "€", " ", "\t", "http://", "https://", "\xa0", "x.example"]
    return [None if rng.random() < 0.02 else "".join(parts[i] for i in rng.integers(0, len(parts), rng.integers(0, 10)))
            for _ in range(n)]


@pytest.mark.parametrize("arrow_type", [pa.string(), pa.large_string()])
def test_url_prefixes_equal_the_regex(arrow_type):
    urls = random_urls(40_000, seed=4) + ["", "/", "//", "///", "a//", "a://b", "?//", "  //x ", "http://h?x//y#z"]
    arr = pa.array(urls, type=arrow_type)
    for part in (arr, arr.slice(11, 35_000), arr.slice(len(urls) - 9)):
        got = url_prefixes(part).to_pylist()
        assert got == [None if u is None else reference_prefix(u) for u in part.to_pylist()]
        regex = pc.extract_regex(pc.utf8_trim_whitespace(part), pattern=url_policy._PREFIX).field("prefix")
        assert got == [None if u is None else p for u, p in zip(part.to_pylist(), regex.to_pylist())]


def test_repeated_ids_are_found_also_when_all_hashes_collide(monkeypatch):
    rng = np.random.default_rng(5)
    ids = np.array([f"id{v}" for v in rng.integers(0, 400, 2000)], dtype=object)
    among = rng.random(2000) < 0.8
    arr = pa.array(ids, type=pa.large_string())
    seen, expected = set(), np.zeros(2000, bool)
    for i in np.flatnonzero(among):
        expected[i] = ids[i] in seen
        seen.add(ids[i])
    assert (manifest._later_occurrences(arr, among) == expected).all()
    monkeypatch.setattr(manifest, "value_hashes", lambda starts, ends, data: np.zeros(len(starts), np.uint64))
    assert (manifest._later_occurrences(arr, among) == expected).all()


def test_value_hashes_depend_on_the_bytes_only():
    words = [""] + ["".join(chr(97 + (i * 7 + j) % 26) for j in range(n)) for i in range(300) for n in (1, 7, 8, 9, 33, 70)]
    words = list(dict.fromkeys(words)) + ["é" * 5, "é" * 5 + "\0"]
    arr = pa.array(words * 2, type=pa.large_string())
    starts, ends, data = text_bytes.string_buffers(arr)
    h = text_bytes.value_hashes(starts, ends, data)
    assert (h[:len(words)] == h[len(words):]).all()                    # same value, other offset
    assert len(set(h[:len(words)].tolist())) == len(words)              # distinct values, distinct hashes
    part = arr.slice(5, 40)
    s2, e2, d2 = text_bytes.string_buffers(part)
    assert (text_bytes.value_hashes(s2, e2, d2) == h[5:45]).all()


def test_key_hashes_of_arrow_strings_give_split_of_key():
    keys = [f"key-{i}" for i in range(3000)] + ["", "ü", "0", "日本語"]
    arr = pa.array(keys, type=pa.string())
    for part, expected in ((arr, keys), (arr.slice(100, 2000), keys[100:2100])):
        got = np.array(["train", "val", "test"])[split_indices(part, 0.1, 0.2)]
        assert got.tolist() == [split_of_key(k, 0.1, 0.2) for k in expected]
    assert (key_hashes(pa.array(keys)) == key_hashes(keys)).all()
    with pytest.raises(ValueError, match="missing values"):
        key_hashes(pa.array(["a", None]))


def test_iso_strings_equal_arrows_formatting():
    rng = np.random.default_rng(6)
    ns = np.concatenate([rng.integers(LO, HI, 5000), [LO, HI - 1, 0, -1, 10**9 - 1, -(10**9) - 1]])
    arrow = pc.strftime(pa.array(ns.view("M8[ns]")), format="%Y-%m-%dT%H:%M:%SZ")
    assert iso_strings(ns).tolist() == [s[:19] + "Z" for s in arrow.to_pylist()]
    assert str(iso_strings(ns).dtype) == str(STR_DTYPE)
    old = np.array(["1800-01-01T00:00:01", "2200-06-01T12:00:00"], dtype="M8[ns]").view(np.int64)
    assert iso_strings(old).tolist() == ["1800-01-01T00:00:01Z", "2200-06-01T12:00:00Z"]   # outside the tables


def test_step_index_with_steps_beyond_the_usable_years():
    steps = parse_steps(["1850", "1890-1905", "1990", "2099-2300", "2400"])
    years = np.array([1900, 1904, 1905, 1906, 1989, 1990, 1991, 2098, 2099, 2100])
    ns = np.array([np.datetime64(f"{y}-07-01", "ns").astype(np.int64) for y in years] + [NAT])
    expected = [next((i for i, s in enumerate(steps) if s.start <= y <= s.end), -1) for y in years] + [-1]
    assert manifest._step_index(ns, steps).tolist() == expected
