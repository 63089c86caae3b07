"""The img2dataset source end to end, for real: a loopback HTTP server, the Snakemake download
rule running img2dataset against it, bucketing and the data report; then an interrupted
download resumed without fetching finished shards again. (The loopback server needs
``data.download.allow_private_hosts``: the default policy refuses loopback URLs.) Also, fast:
the options ``download_shards`` gives img2dataset."""
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from PIL import Image

from conftest import LoopbackImageServer
from ticlip_core.data.bucketing import split_of_key

ROOT = Path(__file__).resolve().parents[1]
STEPS = ["2014", "2015", "2016"]
SPLIT = {"val_fraction": 0.1, "test_fraction": 0.25}


def _jpeg(i: int) -> bytes:
    img = Image.new("RGB", (48, 40), ((37 * i) % 256, (91 * i) % 256, (53 * i) % 256))
    img.paste((255 - (37 * i) % 256, 0, 0), (i % 30, i % 20, i % 30 + 10, i % 20 + 12))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _timestamp(i: int, year: int):
    """Each timestamp format the pipeline reads, in turn."""
    from datetime import datetime, timezone

    dt = datetime(year, 1 + i % 12, 1 + i % 27, 6, 30, tzinfo=timezone.utc)
    return [dt.isoformat().replace("+00:00", "Z"), str(int(dt.timestamp())),
            str(int(dt.timestamp() * 1000)), str(year)][i % 4]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Metadata rows, the files the server holds, and what each row should become."""
    tmp = tmp_path_factory.mktemp("download")
    rows, files, expect = [], {}, []
    for i in range(72):
        year, uid = 2014 + i % 3, f"uid{i:03d}"
        kind = "ok"
        if i in (5, 17, 29, 41):
            kind = "404"
        elif i in (8, 20, 32):
            kind = "corrupt"
        path = f"/img/{i}.jpg"
        if kind == "ok":
            files[path] = _jpeg(i)
        elif kind == "corrupt":
            files[path] = b"\xff\xd8\xff\xe0 this is not a jpeg" * 4
        rows.append({"url": path, "caption": f"a photo number {i} " + "word " * (i % 5), "uid": uid,
                     "timestamp": _timestamp(i, year)})
        expect.append((kind, str(year)))
    # rows the manifest builder keeps out, each with its reason
    extra = [("missing_timestamp", None), ("missing_timestamp", ""), ("unparseable_timestamp", "next tuesday"),
             ("unparseable_timestamp", "2015-13-45"), ("outside_steps", "2010-06-01T00:00:00Z")]
    for j, (reason, ts) in enumerate(extra):
        files[f"/img/x{j}.jpg"] = _jpeg(100 + j)
        rows.append({"url": f"/img/x{j}.jpg", "caption": "kept out", "uid": f"x{j}", "timestamp": ts})
    # a training image that is byte-for-byte a test image of the same step: removed from training
    meta = pd.DataFrame(rows)
    splits = [split_of_key(u, **SPLIT) for u in meta["uid"][:72]]
    test_i = next(i for i in range(72) if expect[i] == ("ok", "2015") and splits[i] == "test")
    train_i = next(i for i in range(72) if expect[i] == ("ok", "2015") and splits[i] == "train")
    files[f"/img/{train_i}.jpg"] = files[f"/img/{test_i}.jpg"]
    server = LoopbackImageServer(files)
    meta["url"] = server.url + meta["url"]
    meta.to_parquet(tmp / "metadata.parquet")
    yield {"tmp": tmp, "meta": meta, "expect": expect, "splits": splits, "dup": train_i, "server": server}
    server.close()


def _config(tmp: Path, **extra) -> Path:
    cfg = {
        "results": str(tmp / "results"),
        "data": {"source": "img2dataset", "name": "loop", "metadata": [str(tmp / "metadata.parquet")],
                 "columns": {"id": "uid"}, "split": SPLIT, "samples_per_shard": 50,
                 "download": {"processes_count": 1, "thread_count": 4, "image_size": 32, "samples_per_shard": 20,
                              "retries": 0, "timeout": 5, "allow_private_hosts": True}},
        "tic": {"steps": STEPS, "methods": ["sequential"], "lr_ablation": {"method": None}},
        "clclip": {"enabled": False},  # the TiC path only: the CL-CLIP and memclip studies are on in the default
        "memclip": {"enabled": False},
    }
    for block, values in extra.items():
        cfg.setdefault(block, {}).update(values)
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _snakemake(tmp: Path, *targets: str, config: Path | None = None):
    out = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", str(config or _config(tmp)),
                          "--snakefile", str(ROOT / "Snakefile"), "--directory", str(tmp), *targets],
                         cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stderr[-4000:]
    return out


@pytest.fixture(scope="module")
def downloaded(world):
    tmp = world["tmp"]
    data = tmp / "results" / "data" / "loop"
    _snakemake(tmp, str(data / "report" / "data_report.csv"))
    return data


def test_download_rule_runs_img2dataset_and_counts_every_row(world, downloaded):
    data, expect = downloaded, world["expect"]
    shards = sorted(p.name for p in (data / "shards").glob("*.tar"))
    assert shards == ["00000.tar", "00001.tar", "00002.tar", "00003.tar"]  # 72 rows, 20 per shard
    meta = pd.concat(pd.read_parquet(p) for p in sorted((data / "shards").glob("*.parquet")))
    assert len(meta) == 72 and set(meta["uid"]) == {f"uid{i:03d}" for i in range(72)}
    status = dict(zip(meta["uid"], meta["status"]))
    for i, (kind, _) in enumerate(expect):
        assert (status[f"uid{i:03d}"] == "success") == (kind == "ok"), (i, kind, status[f"uid{i:03d}"])

    summary = json.loads((data / "bucket_summary.json").read_text())
    for step in STEPS:
        rows = [i for i, (_, y) in enumerate(expect) if y == step]
        s = summary["steps"][step]
        assert s["rows"] == len(rows)
        assert s["download_failed"] == sum(expect[i][0] != "ok" for i in rows)
        assert s["duplicate_of_test"] == (1 if step == "2015" else 0)
        ok = [i for i in rows if expect[i][0] == "ok" and i != world["dup"]]
        for split in ("train", "val", "test"):
            assert s[split] == sum(world["splits"][i] == split for i in ok), (step, split)

    # the per-step shards hold exactly the used samples, with their metadata
    import webdataset as wds
    keys = [json.loads(smp["json"])["uid"] for step in STEPS for split in ("train", "val", "test")
            for tar in sorted((data / "steps" / step / split).glob("*.tar"))
            for smp in wds.WebDataset(str(tar), shardshuffle=False, empty_check=False)]
    used = {f"uid{i:03d}" for i, (kind, _) in enumerate(expect) if kind == "ok" and i != world["dup"]}
    assert sorted(keys) == sorted(used)


def test_bad_rows_are_quarantined_with_their_reason(downloaded):
    quarantine = pd.read_parquet(downloaded / "metadata" / "quarantine.parquet")
    assert sorted(zip(quarantine["uid"], quarantine["reason"])) == [
        ("x0", "missing_timestamp"), ("x1", "missing_timestamp"), ("x2", "unparseable_timestamp"),
        ("x3", "unparseable_timestamp"), ("x4", "outside_steps")]
    assert quarantine["reason_detail"].isna().all()
    summary = json.loads((downloaded / "metadata" / "summary.json").read_text())
    assert summary["url_policy"] == {"allowed_schemes": ["http", "https"], "allow_private_hosts": True,
                                     "resolve_hostnames": False}
    prepared = pd.read_parquet(downloaded / "metadata" / "prepared.parquet")
    assert len(prepared) == 72 and prepared["timestamp"].str.match(r"^201[456]-\d\d-\d\dT\d\d:\d\d:\d\dZ$").all()


def test_data_report_accounts_for_every_row(world, downloaded):
    table = pd.read_csv(downloaded / "report" / "data_report.csv").set_index("step")
    assert table.loc["total", "rows_in"] == 77
    assert table.loc["no step", "quarantined"] == 4 and table.loc["no step", "outside_steps"] == 1
    assert table.loc["total", "download_failed"] == 7 and table.loc["total", "deduplicated"] == 1
    assert table.loc["total", ["train", "val", "test"]].sum() == 72 - 7 - 1
    assert table.loc["2015", "caption_words_mean"] > 3
    assert (downloaded / "report" / "samples_per_year.png").stat().st_size > 5000


def test_an_interrupted_download_resumes_without_refetching(world, downloaded):
    """Leave shards 0 and 1 as an interrupted download would, and rerun: only 2 and 3 are fetched."""
    from ticlip_core.data.download import DIGEST_FILE

    data, server = downloaded, world["server"]
    partial = data / "shards.incomplete"
    partial.mkdir()
    for shard in ("00000", "00001"):
        for suffix in (".tar", ".parquet", "_stats.json"):
            shutil.copy2(data / "shards" / f"{shard}{suffix}", partial / f"{shard}{suffix}")
    shutil.copy2(data / "shards" / DIGEST_FILE, partial / DIGEST_FILE)  # what it was started from
    shutil.rmtree(data / "shards")
    before = len(server.requests)
    _snakemake(world["tmp"], str(data / "shards"))
    fetched = {p.rsplit("/", 1)[-1] for p in server.requests[before:]}
    # img2dataset's shards are consecutive runs of 20 rows of the prepared manifest
    prepared = pd.read_parquet(data / "metadata" / "prepared.parquet")
    later = {u.rsplit("/", 1)[-1] for u in prepared["url"][40:]}
    assert fetched and fetched <= later
    assert not partial.exists() and len(list((data / "shards").glob("*.tar"))) == 4
    assert not list(data.glob("shards.incomplete.stale-*"))


def test_real_data_trains_and_evaluates_with_classes_and_a_static_set(world, downloaded):
    """The rest of the DAG on downloaded data: dynamic classification from a key-to-class table,
    and a static set read from a CIFAR-100 folder in its official pickle format."""
    from test_dataset_loaders import write_cifar

    tmp = world["tmp"]
    write_cifar(tmp / "cifar", [((255, 0, 0), 0, 0), ((0, 255, 0), 1, 1), ((0, 0, 255), 2, 0), ((9, 9, 9), 1, 1)])
    # every other downloaded row has a class; the rest count for retrieval only
    pd.DataFrame({"key": [f"uid{i:03d}" for i in range(0, 72, 2)],
                  "class": ["red", "green", "blue"] * 12}).to_csv(tmp / "classes.csv", index=False)
    config = _config(
        tmp,
        data={"classification": {"key_to_class": str(tmp / "classes.csv"), "classnames": ["red", "green", "blue"]}},
        model={"name": "ticlip-vit-micro"},
        train={"budget_samples": 32, "batch_size": 16, "warmup_iterations": 1},
        eval={"retrieval_pool_size": 8, "batch_size": 64,
              "static_sets": [{"name": "cifar", "format": "cifar100", "path": str(tmp / "cifar"), "split": "test"}]})
    _snakemake(tmp, config=config)
    tic = tmp / "results" / "tic"
    rows = pd.read_csv(tic / "all_evals.csv", dtype={"train_step": str, "eval_step": str})
    final = rows[rows["train_step"] == "2016"]
    assert set(final["task"]) == {"retrieval", "classification", "static_cifar"}
    assert set(final.loc[final["task"] == "classification", "eval_step"]) == set(STEPS)
    top1 = final[(final["task"] == "static_cifar") & (final["metric"] == "top1")]["value"]
    assert len(top1) == 1 and 0.0 <= top1.item() <= 1.0
    table = pd.read_csv(tic / "table2.csv")
    assert list(table["Method"]) == ["sequential"]
    log = (tmp / "results" / "logs" / "tic" / "seed0" / "evaluate" / "sequential.log").read_text()
    assert "without a class" in log


# --------------------------------------------------------------------------- options given to img2dataset

OPTIONS = {"processes_count": 1, "thread_count": 2, "image_size": 32, "resize_mode": "border",
           "resize_only_if_bigger": False, "encode_quality": 95, "samples_per_shard": 10, "timeout": 2, "retries": 0,
           "incremental_mode": "incremental", "min_image_size": 0, "user_agent_token": None}


@pytest.fixture
def fake_img2dataset(monkeypatch, tmp_path):
    """img2dataset.download replaced by a recorder that writes one shard's stats for every row."""
    monkeypatch.setenv("NO_ALBUMENTATIONS_UPDATE", "1")   # no version check against PyPI on import
    import img2dataset

    calls = []

    def fake(**kwargs):
        calls.append(kwargs)
        rows = len(pd.read_parquet(kwargs["url_list"]))
        Path(kwargs["output_folder"], "00000_stats.json").write_text(json.dumps({"count": rows, "successes": rows}))

    monkeypatch.setattr(img2dataset, "download", fake)
    prepared = tmp_path / "prepared.parquet"
    pd.DataFrame({"url": ["http://a.example/1.jpg"], "caption": ["c"], "sample_id": ["s1"]}).to_parquet(prepared)
    return calls, prepared


@pytest.mark.parametrize("limits, area, ratio", [
    ({}, 89_478_485, float("inf")),                                   # PIL's decompression-bomb limit by default
    ({"max_image_area": None, "max_aspect_ratio": None}, float("inf"), float("inf")),   # null: no limit
    ({"max_image_area": 1000, "max_aspect_ratio": 3.0}, 1000, 3.0),
])
def test_download_passes_the_image_limits_to_img2dataset(fake_img2dataset, tmp_path, limits, area, ratio):
    from ticlip_core.data.download import download_shards

    calls, prepared = fake_img2dataset
    stats = download_shards(prepared, tmp_path / "shards", url_col="url", caption_col="caption",
                            options={**OPTIONS, **limits})
    assert stats["count"] == 1 and len(calls) == 1
    assert calls[0]["max_image_area"] == area and calls[0]["max_aspect_ratio"] == ratio
    assert calls[0]["save_additional_columns"] == ["sample_id"] and calls[0]["incremental_mode"] == "incremental"


def test_schema_default_image_area_is_the_one_download_uses():
    from snakemake.utils import validate

    from ticlip_core.data.download import DEFAULT_MAX_IMAGE_AREA

    cfg = {"data": {"download": {}}}
    validate(cfg, str(ROOT / "ticlip_core/schemas/config.schema.yaml"))
    download = cfg["data"]["download"]
    assert download["max_image_area"] == DEFAULT_MAX_IMAGE_AREA == Image.MAX_IMAGE_PIXELS
    assert download["max_aspect_ratio"] is None
    assert (download["allowed_schemes"], download["allow_private_hosts"], download["resolve_hostnames"]) == \
        (["http", "https"], False, False)
