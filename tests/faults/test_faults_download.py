"""Faults on the real-data download path, with img2dataset fetching from a loopback HTTP server:

- an interrupted download whose metadata was prepared again (other captions) is not resumed:
  the unfinished folder is set aside, the download starts afresh and the shards hold the new
  captions; with the same metadata it is resumed (finished shards are not fetched again);
- a metadata table with URLs img2dataset must not fetch (``file://``, ``data:``, ``ftp://``,
  link-local, malformed): those rows are quarantined with their reason and never reach
  img2dataset; an image over ``max_image_area`` is refused by img2dataset.

``download_shards`` and ``build_manifest`` are called directly (no Snakemake run)."""
import io
import logging
import shutil
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from conftest import LoopbackImageServer
from ticlip_core.data.bucketing import parse_steps
from ticlip_core.data.download import (DIGEST_FILE, download_inputs, download_shards, incomplete_dir, inputs_digest,
                                       recorded_digest, set_aside_if_stale)
from ticlip_core.data.manifest import build_manifest

ROWS, PER_SHARD = 12, 6
OPTIONS = {"processes_count": 1, "thread_count": 4, "image_size": 16, "resize_mode": "border",
           "resize_only_if_bigger": False, "encode_quality": 90, "samples_per_shard": PER_SHARD, "timeout": 5,
           "retries": 0, "incremental_mode": "incremental", "min_image_size": 0, "user_agent_token": None}


def _jpeg(i: int, size=(24, 20)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, ((37 * i) % 256, (91 * i) % 256, (53 * i) % 256)).save(buf, format="JPEG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def server():
    """127.0.0.1 serving /img/<i>.jpg (i < ROWS) and /big.jpg (200 x 100 pixels); logs the paths asked."""
    files = {f"/img/{i}.jpg": _jpeg(i) for i in range(ROWS)}
    files["/big.jpg"] = _jpeg(99, (200, 100))
    httpd = LoopbackImageServer(files)
    yield httpd.url, httpd.requests
    httpd.close()


def _prepare(tmp: Path, urls: list[str], captions: list[str], **policy) -> tuple[Path, pd.DataFrame, dict]:
    """build_manifest on the rows (all of 2014, all train), the prepared table written as
    prepare_metadata writes it."""
    meta = pd.DataFrame({"uid": [f"u{i:03d}" for i in range(len(urls))], "url": urls, "caption": captions,
                         "ts": ["2014-06-01T00:00:00Z"] * len(urls)})
    prepared, quarantine, summary = build_manifest(
        meta, steps=parse_steps(["2014"]), columns={"url": "url", "caption": "caption", "id": "uid"},
        timestamp={"column": "ts"}, val_fraction=0.0, test_fraction=0.0,
        url_policy={"allow_private_hosts": True, **policy})
    path = tmp / "prepared.parquet"
    prepared.to_parquet(path, index=False)
    return path, quarantine, summary


def _download(prepared: Path, out: Path, **options) -> dict:
    return download_shards(prepared, out, url_col="url", caption_col="caption", options={**OPTIONS, **options})


def _shard_rows(out: Path) -> pd.DataFrame:
    return pd.concat(pd.read_parquet(p) for p in sorted(out.glob("*.parquet"))).reset_index(drop=True)


@pytest.fixture(scope="module")
def finished(server, tmp_path_factory):
    """One finished download of ROWS images with captions ``caption <i>``."""
    url, _ = server
    tmp = tmp_path_factory.mktemp("finished")
    prepared, _, _ = _prepare(tmp, [f"{url}/img/{i}.jpg" for i in range(ROWS)], [f"caption {i}" for i in range(ROWS)])
    _download(prepared, tmp / "shards")
    return prepared, tmp / "shards"


def _interrupted(tmp: Path, finished) -> tuple[Path, Path]:
    """The folder an interruption after the first shard of ``finished`` leaves:
    ``<out>.incomplete`` with shard 0 and the record of the download's inputs."""
    prepared, done = finished
    shutil.copy2(prepared, tmp / "prepared.parquet")
    out = tmp / "shards"
    work = incomplete_dir(out)
    work.mkdir()
    for name in ("00000.tar", "00000.parquet", "00000_stats.json", DIGEST_FILE):
        shutil.copy2(done / name, work / name)
    return tmp / "prepared.parquet", out


def test_changed_metadata_is_not_resumed_from_an_old_incomplete_folder(tmp_path, server, finished, caplog):
    url, requests = server
    _, out = _interrupted(tmp_path, finished)
    old_digest = recorded_digest(incomplete_dir(out))
    # the metadata is prepared again, with other captions, before the rerun
    prepared, _, _ = _prepare(tmp_path, [f"{url}/img/{i}.jpg" for i in range(ROWS)],
                              [f"new caption {i}" for i in range(ROWS)])
    before = len(requests)
    with caplog.at_level(logging.WARNING, logger="ticlip_core.data.download"):
        stats = _download(prepared, out)
    assert stats["count"] == stats["successes"] == ROWS
    rows = _shard_rows(out)
    assert sorted(rows["caption"]) == sorted(f"new caption {i}" for i in range(ROWS))   # none of the old ones
    assert sorted(requests[before:]) == sorted(f"/img/{i}.jpg" for i in range(ROWS))     # shard 0 fetched again
    # the old folder is set aside whole, not deleted, and the log says so
    stale = tmp_path / f"shards.incomplete.stale-{old_digest[:8]}"
    assert sorted(p.name for p in stale.iterdir()) == sorted(["00000.tar", "00000.parquet", "00000_stats.json",
                                                              DIGEST_FILE])
    assert set(pd.read_parquet(stale / "00000.parquet")["caption"]) == {f"caption {i}" for i in range(PER_SHARD)}
    assert not incomplete_dir(out).exists()
    assert "not resuming" in caplog.text and str(stale) in caplog.text
    assert recorded_digest(out) == stats["inputs_digest"] != old_digest


def test_unchanged_metadata_is_resumed_without_refetching(tmp_path, server, finished):
    url, requests = server
    captions = [f"caption {i}" for i in range(ROWS)]
    prepared, out = _interrupted(tmp_path, finished)
    digest = recorded_digest(incomplete_dir(out))
    before = len(requests)
    stats = _download(prepared, out, thread_count=2, retries=1)    # speed options do not count
    assert stats["count"] == ROWS
    assert sorted(requests[before:]) == sorted(f"/img/{i}.jpg" for i in range(PER_SHARD, ROWS))   # shard 0 kept
    assert sorted(_shard_rows(out)["caption"]) == sorted(captions)
    assert not list(tmp_path.glob("shards.incomplete*")) and recorded_digest(out) == digest


def test_the_digest_covers_the_table_bytes_and_the_output_options(tmp_path):
    a = tmp_path / "a.parquet"
    pd.DataFrame({"url": ["http://x.example/1.jpg"], "caption": ["one"]}).to_parquet(a)
    b = tmp_path / "b.parquet"
    pd.DataFrame({"url": ["http://x.example/1.jpg"], "caption": ["One"]}).to_parquet(b)

    def digest(path=a, **options):
        return inputs_digest(download_inputs(path, url_col="url", caption_col="caption",
                                             options={**OPTIONS, **options}))

    base = digest()
    assert digest(b) != base
    for key, value in (("image_size", 32), ("resize_mode", "center_crop"), ("encode_quality", 80),
                       ("samples_per_shard", 4), ("min_image_size", 8), ("max_image_area", 10), ("max_aspect_ratio", 2),
                       ("resize_only_if_bigger", True), ("user_agent_token", "ticlip")):
        assert digest(**{key: value}) != base, key
    for key, value in (("processes_count", 8), ("thread_count", 64), ("timeout", 30), ("retries", 5)):
        assert digest(**{key: value}) == base, key
    assert digest(max_image_area=89_478_485) == base        # the default, written out or not


def test_an_incomplete_folder_without_a_record_is_set_aside(tmp_path, caplog):
    """A folder left by a download that recorded nothing (an older version) cannot be checked."""
    work = tmp_path / "shards.incomplete"
    work.mkdir()
    set_aside_if_stale(work, "0" * 64)                       # empty: nothing to set aside, reused
    assert work.is_dir()
    (work / "00000_stats.json").write_text("{}")
    with caplog.at_level(logging.WARNING, logger="ticlip_core.data.download"):
        stale = set_aside_if_stale(work, "0" * 64)
    assert stale == tmp_path / "shards.incomplete.stale-unknown" and (stale / "00000_stats.json").exists()
    assert not work.exists() and "no record of its inputs" in caplog.text
    work.mkdir()
    (work / DIGEST_FILE).write_text("not json")
    assert set_aside_if_stale(work, "0" * 64) == tmp_path / "shards.incomplete.stale-unknown-2"   # never overwrites


def test_refused_urls_never_reach_img2dataset_and_big_images_are_refused(tmp_path, server):
    """The loopback server needs allow_private_hosts; the other refusals hold with it on."""
    url, requests = server
    port = url.rsplit(":", 1)[1]
    good = [f"{url}/img/{i}.jpg" for i in range(6)]
    refused = {"file:///etc/hostname": "url_scheme_refused", "data:image/jpeg;base64,/9j/4AAQ": "url_scheme_refused",
               f"ftp://127.0.0.1:{port}/img/0.jpg": "url_scheme_refused", "http://[::1/img/1.jpg": "url_malformed",
               "HTTP://127.0.0.1:99999/img/2.jpg": "url_malformed", f"http://127.0.0.1\\@x.example:{port}/": "url_malformed"}
    urls = good[:3] + list(refused) + good[3:] + [f"{url}/big.jpg"]
    prepared, quarantine, summary = _prepare(tmp_path, urls, [f"c{i}" for i in range(len(urls))])
    assert sorted(zip(quarantine["url"], quarantine["reason"])) == sorted(refused.items())
    assert quarantine["reason_detail"].notna().all()
    assert summary["rows_prepared"] + sum(summary["excluded"].values()) == len(urls)
    assert summary["excluded"]["url_scheme_refused"] == 3 and summary["excluded"]["url_malformed"] == 3
    before = len(requests)
    stats = _download(prepared, tmp_path / "shards", max_image_area=200 * 100 - 1)
    assert stats["count"] == len(good) + 1 and stats["successes"] == len(good)
    rows = _shard_rows(tmp_path / "shards")
    assert set(rows["url"]) == set(good) | {f"{url}/big.jpg"}       # img2dataset saw no refused URL
    big = rows[rows["url"] == f"{url}/big.jpg"].iloc[0]
    assert big["status"] != "success" and big["error_message"] == "image area too large"
    assert sorted(requests[before:]) == sorted([f"/img/{i}.jpg" for i in range(6)] + ["/big.jpg"])
