"""Tests of the synthetic time-evolving world (ticlip_core.data) and its img2dataset shard layout."""
from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ticlip_core.data import render, shards, synthetic, world

SMALL = dict(years=(2014, 2017), samples_per_year=15, samples_per_shard=20)  # 60 samples, 3 shards


def _class_id(name: str) -> int:
    return world.class_names().index(name)


def _samples(year, n, seed=0, **kwargs):
    return [synthetic.render_sample(np.random.default_rng([seed, i]), year=year, **kwargs)
            for i in range(n)]


def _tar_members(path):
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}, [m.name for m in tar.getmembers()]


@pytest.fixture(scope="module")
def small_world(tmp_path_factory):
    out = tmp_path_factory.mktemp("world")
    summary = synthetic.synthesize_world(out, seed=0, **SMALL)
    return out, summary


# --------------------------------------------------------------------------------------------
# Catalogue
# --------------------------------------------------------------------------------------------

def test_catalogue_sizes():
    assert len(world.CLASSES) >= 50
    assert len(world.SUPERCLASSES) >= 8
    assert set(world.DOMAINS) >= {"photo", "clipart", "sketch", "noisy"}
    assert len(set(world.class_names())) == len(world.CLASSES)
    assert {c.superclass for c in world.CLASSES} == set(world.SUPERCLASSES)
    assert [c.id for c in world.CLASSES] == list(range(len(world.CLASSES)))
    rows = world.catalogue()
    assert len(rows) == len(world.CLASSES)
    assert {"name", "superclass", "emerge_year", "look_change_year"} <= set(rows[0])


def test_every_class_and_look_renders_differently():
    looks = [(world.shape_of(c.id), p) for c in world.CLASSES for p in {c.pattern, c.new_pattern} - {None}]
    images = set()
    for shape, pattern in looks:
        obj = render.SceneObject(shape, pattern, world.COLOUR_RGB["red"], 0.5, 0.5, 0.3)
        pixels, _ = render.render_scene([obj], domain="clipart", size=32, rng=np.random.default_rng(0),
                                        clutter=0.0, quality=1.0)
        images.add(pixels.tobytes())
    assert len(images) == len(looks)


def test_timeless_classes_exclude_every_changing_class():
    timeless = set(world.timeless_class_ids())
    assert len(timeless) >= 30
    for c in world.CLASSES:
        changes = c.emerge_year or c.look_change_year or c.renamed_year
        assert (c.id in timeless) == (changes is None)


# --------------------------------------------------------------------------------------------
# Time dynamics
# --------------------------------------------------------------------------------------------

def test_emerging_classes_absent_before_their_year_and_present_after():
    emerging = [world.CLASSES[i] for i in world.emerging_class_ids()]
    assert len([c for c in emerging if c.emerge_year > 2016]) >= 5
    for c in emerging:
        assert c.id not in world.classes_present(c.emerge_year - 1)
        assert world.class_weights(c.emerge_year - 1)[c.id] == 0
        assert c.id in world.classes_present(c.emerge_year)
        assert world.class_weights(c.emerge_year)[c.id] > 0
    late = {c.id for c in emerging if c.emerge_year > 2016}
    seen_2016 = {cid for _, m in _samples(2016, 300) for cid in m["labels"]}
    seen_2021 = {cid for _, m in _samples(2021, 300) for cid in m["labels"]}
    assert not seen_2016 & late
    assert len(seen_2021 & late) >= 5


def test_look_change_class_renders_differently_under_the_same_name():
    car = _class_id("car")
    change = world.CLASSES[car].look_change_year
    assert world.display_name(car, change - 1) == world.display_name(car, change)
    looks = [render.object_masks(render.SceneObject(world.shape_of(car), world.pattern_at(car, year),
                                                    (1, 0, 0), 0.5, 0.5, 0.3), 32)
             for year in (change - 1, change)]
    assert np.array_equal(looks[0][0], looks[1][0])  # same silhouette ...
    assert (looks[0][2] != looks[1][2]).sum() > 20    # ... different marking
    before, meta_before = synthetic.render_sample(np.random.default_rng(3), year=change - 1,
                                                  domain="clipart", class_id=car)
    after, meta_after = synthetic.render_sample(np.random.default_rng(3), year=change,
                                                domain="clipart", class_id=car)
    assert meta_before["label_names"][0] == meta_after["label_names"][0] == "car"
    assert " car" in meta_before["caption"] and " car" in meta_after["caption"]
    assert np.abs(np.asarray(before, float) - np.asarray(after, float)).mean() > 3
    for cid in world.look_change_class_ids():
        c = world.CLASSES[cid]
        assert world.pattern_at(cid, c.look_change_year - 1) != world.pattern_at(cid, c.look_change_year)


def test_typical_colours_follow_the_class_and_its_look_in_dated_data_only():
    changed = world.look_change_class_ids()
    assert all(world.typical_colour(c, world.CLASSES[c].look_change_year - 1)
               != world.typical_colour(c, world.CLASSES[c].look_change_year) for c in changed)
    assert len({world.typical_colour(c, None) for c in range(world.NUM_CLASSES)}) > 5  # spread over colours
    for year in (2014, 2020):
        for _, meta in _samples(year, 40, typical_colour=1.0):
            assert meta["object_colours"] == [world.typical_colour(c, year) for c in meta["labels"]]
            assert meta["colour"] == world.typical_colour(meta["labels"][0], year)
    # timeless scenes (the static set, CL-CLIP's and memclip's crops) never take them
    assert [m for _, m in _samples(None, 20, typical_colour=1.0)] == [m for _, m in _samples(None, 20)]
    half = [m for _, m in _samples(2016, 200, typical_colour=0.5)]
    share = np.mean([m["colour"] == world.typical_colour(m["labels"][0], 2016) for m in half])
    assert 0.45 < share < 0.65  # 0.5 + 0.5 x 1/10 by chance
    with pytest.raises(ValueError, match="typical_colour must be a probability"):
        synthetic.render_sample(np.random.default_rng(0), year=2016, typical_colour=1.5)


def test_caption_vocabulary_drifts():
    def modern_share(captions):
        markers = ("#", " lol", "pov:", " rn", "vibes", "cant stop", "look at this", "just spotted", " today")
        return np.mean([any(m in c for m in markers) for c in captions])

    early = [m["caption"] for _, m in _samples(2014, 200)]
    late = [m["caption"] for _, m in _samples(2021, 200)]
    assert modern_share(early) < 0.15
    assert modern_share(late) > 0.6
    phone = _class_id("smartphone")
    _, m2014 = synthetic.render_sample(np.random.default_rng(0), year=2014, class_id=phone)
    _, m2021 = synthetic.render_sample(np.random.default_rng(0), year=2021, class_id=phone)
    assert "cellphone" in m2014["caption"] and "smartphone" not in m2014["caption"]
    assert "smartphone" in m2021["caption"] and "cellphone" not in m2021["caption"]
    assert m2014["label_names"][0] == m2021["label_names"][0] == "smartphone"


def test_domain_mix_clutter_and_quality_shift():
    early, late = world.domain_mix(2014), world.domain_mix(2021)
    assert early["clipart"] + early["noisy"] > 0.6 and late["photo"] > 0.6
    assert world.clutter_rate(2021) > 3 * world.clutter_rate(2014)
    assert world.quality(2021) > world.quality(2014)
    share = {y: np.mean([m["domain"] == "photo" for _, m in _samples(y, 300)]) for y in (2014, 2021)}
    assert share[2021] - share[2014] > 0.3


def test_class_frequencies_change_smoothly():
    w = {y: world.class_weights(y) for y in range(2014, 2022)}
    assert all(abs(v.sum() - 1) < 1e-9 for v in w.values())
    assert 0.5 * np.abs(w[2021] - w[2014]).sum() > 0.2  # total variation between the ends
    steps = [0.5 * np.abs(w[y + 1] - w[y]).sum() for y in range(2014, 2021)]
    assert max(steps) < 0.5 * np.abs(w[2021] - w[2014]).sum()  # no single-year jump dominates


def test_last_step_differs_substantially_from_first():
    changed = set(world.changed_class_ids(2021, 2016))
    involved = np.mean([bool(changed & set(m["labels"])) for _, m in _samples(2021, 400)])
    assert 0.2 <= involved <= 0.5
    assert not set(world.changed_class_ids(2016, 2016))


# --------------------------------------------------------------------------------------------
# Samples
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("domain", world.DOMAINS)
def test_render_sample_in_a_given_domain(domain):
    image, meta = synthetic.render_sample(np.random.default_rng(1), year=2018, domain=domain)
    assert image.mode == "RGB" and image.size == (32, 32)
    assert meta["domain"] == domain
    assert len(meta["labels"]) == len(meta["boxes"]) == len(meta["label_names"]) == len(meta["object_colours"])
    assert meta["labels"].count(meta["labels"][0]) == meta["count"]
    for x0, y0, x1, y1 in meta["boxes"]:
        assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1
    assert meta["colour"] in world.COLOURS and meta["size"] in world.SIZES
    assert meta["position"] in world.POSITIONS


def test_domains_look_different():
    images = {d: np.asarray(synthetic.render_sample(np.random.default_rng(5), year=2018, domain=d,
                                                    class_id=0)[0], float) for d in world.DOMAINS}
    assert images["clipart"][0, 0].min() > 200          # plain white background
    assert images["photo"][0, 0].max() < 230            # textured background
    assert images["noisy"].std() < images["clipart"].std()  # low contrast
    sketch_ink = (images["sketch"].mean(axis=2) < 200).mean()
    clip_ink = (images["clipart"].mean(axis=2) < 200).mean()
    assert sketch_ink < clip_ink                        # outlines only


def test_image_size_224():
    image, meta = synthetic.render_sample(np.random.default_rng(0), year=2020, image_size=224)
    assert image.size == (224, 224)
    _, meta32 = synthetic.render_sample(np.random.default_rng(0), year=2020, image_size=32)
    for field in ("labels", "caption", "timestamp", "domain", "colour"):  # same scene, finer pixels
        assert meta[field] == meta32[field]
    assert np.allclose(meta["boxes"], meta32["boxes"], atol=2 / 32)


# --------------------------------------------------------------------------------------------
# Shards: determinism and layout
# --------------------------------------------------------------------------------------------

def _shard_bytes(directory):
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())
            if p.suffix in (".tar", ".parquet")}


def test_same_seed_same_bytes_any_worker_count(small_world, tmp_path):
    out, _ = small_world
    again = synthetic.synthesize_world(tmp_path / "again", seed=0, workers=2, **SMALL)
    assert again["shards"] == 3
    reference = _shard_bytes(out)
    assert len(reference) == 6
    assert _shard_bytes(tmp_path / "again") == reference
    synthetic.synthesize_world(tmp_path / "other", seed=1, **SMALL)
    other = _shard_bytes(tmp_path / "other")
    assert other.keys() == reference.keys()
    assert all(other[name] != reference[name] for name in reference)


def test_layout_matches_img2dataset(small_world):
    out, summary = small_world
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"0000{i}{ext}" for i in range(3) for ext in (".parquet", ".tar", "_stats.json")]
    assert summary["samples"] == 60 and summary["per_year"] == {2014: 15, 2015: 15, 2016: 15, 2017: 15}
    assert sum(summary["per_domain"].values()) == 60
    for shard_id in range(3):
        stem = f"{shard_id:05d}"
        members, order = _tar_members(out / f"{stem}.tar")
        keys = [shards.compute_key(i, shard_id, 20) for i in range(20)]
        assert order == [f"{k}.{ext}" for k in keys for ext in ("jpg", "json", "txt")]
        table = pd.read_parquet(out / f"{stem}.parquet")
        assert list(table["key"]) == keys
        stats = json.loads((out / f"{stem}_stats.json").read_text())
        assert stats["count"] == stats["successes"] == len(table) == 20
        assert stats["failed_to_download"] == stats["failed_to_resize"] == 0
        assert stats["status_dict"] == {"success": 20}
        assert {"duration", "start_time", "end_time"} <= set(stats)
        for key, row in zip(keys, table.itertuples()):
            meta = json.loads(members[f"{key}.json"])
            jpg = members[f"{key}.jpg"]
            assert meta["key"] == key and meta["status"] == "success" and meta["error_message"] is None
            assert meta["url"] == f"synthetic://0/{key}"
            assert meta["sha256"] == hashlib.sha256(jpg).hexdigest()
            assert members[f"{key}.txt"].decode() == meta["caption"] == row.caption
            assert meta["labels"] == list(row.labels) and meta["domain"] == row.domain
            assert meta["boxes"] == [list(b) for b in row.boxes]
            image = Image.open(io.BytesIO(jpg))
            image.load()
            assert image.format == "JPEG" and image.size == (32, 32) == (meta["width"], meta["height"])
            ts = datetime.strptime(meta["timestamp"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
            assert 2014 <= ts.year <= 2017
            assert all(world.CLASSES[c].emerge_year is None or world.CLASSES[c].emerge_year <= ts.year
                       for c in meta["labels"])
            expected = {"url", "caption", "key", "status", "error_message", "width", "height",
                        "original_width", "original_height", "sha256", "timestamp", "labels",
                        "label_names", "boxes", "domain", "colour", "size", "position", "count",
                        "object_colours"}
            assert set(meta) == expected


def test_read_shard_metadata(small_world, tmp_path):
    out, _ = small_world
    frame = shards.read_shard_metadata(out)
    assert len(frame) == 60 and frame["key"].is_unique
    assert list(frame["shard"].unique()) == ["00000", "00001", "00002"]
    years = pd.to_datetime(frame["timestamp"], utc=True, format="ISO8601").dt.year
    assert years.value_counts().to_dict() == {2014: 15, 2015: 15, 2016: 15, 2017: 15}
    with pytest.raises(FileNotFoundError):
        shards.read_shard_metadata(tmp_path)


def test_keys_match_img2dataset():
    downloader = pytest.importorskip("img2dataset.downloader")
    for per_shard in (1, 10, 20, 1000, 1500, 10000):
        for shard_id, index in ((0, 0), (3, per_shard - 1), (12345, 7 % per_shard)):
            digits = shards.key_digits(per_shard)
            assert shards.compute_key(index, shard_id, per_shard) == \
                downloader.compute_key(index, shard_id, digits, shards.SHARD_ID_DIGITS)
    assert shards.compute_key(42, 3, 10000) == "000030042"


def test_tar_bytes_match_webdataset_tarwriter(tmp_path):
    wds = pytest.importorskip("webdataset")
    samples = [(b"\xff\xd8fake-jpeg" * (i + 1), f"caption {i}") for i in range(3)]
    with shards.ShardWriter(tmp_path, 0, samples_per_shard=10) as writer:
        for image, caption in samples:
            writer.write(image, caption, width=32, height=32)
    table = pd.read_parquet(tmp_path / "00000.parquet")
    buffer = io.BytesIO()
    reference = wds.TarWriter(buffer, mtime=shards.TAR_MTIME)
    for (image, caption), meta in zip(samples, table.to_dict("records")):
        meta = {k: (None if pd.isna(v) else v) for k, v in meta.items()}
        meta.update(width=int(meta["width"]), height=int(meta["height"]),
                    original_width=int(meta["original_width"]), original_height=int(meta["original_height"]))
        reference.write({"__key__": meta["key"], "jpg": image, "txt": caption,
                         "json": json.dumps(meta, indent=4)})
    reference.close()
    assert (tmp_path / "00000.tar").read_bytes() == buffer.getvalue()


def test_webdataset_reads_the_shards(small_world):
    wds = pytest.importorskip("webdataset")
    out, _ = small_world
    samples = list(wds.WebDataset(str(out / "00001.tar"), shardshuffle=False))
    assert [s["__key__"] for s in samples] == [shards.compute_key(i, 1, 20) for i in range(20)]
    assert all(json.loads(s["json"])["caption"] == s["txt"].decode() for s in samples)


def test_failed_shard_leaves_no_complete_looking_files(tmp_path):
    with pytest.raises(RuntimeError):
        with shards.ShardWriter(tmp_path, 0, samples_per_shard=10) as writer:
            writer.write(b"x", "a caption", width=1, height=1)
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_bad_options_raise_clear_errors(tmp_path, small_world):
    with pytest.raises(TypeError, match="unknown synthetic data option"):
        synthetic.synthesize_world(tmp_path, seed=0, samples_per_yr=10)
    with pytest.raises(ValueError, match="seed"):
        synthetic.synthesize_world(tmp_path, seed=-1, samples_per_year=1)
    with pytest.raises(ValueError, match="domain"):
        synthetic.render_sample(np.random.default_rng(0), year=2014, domain="oil painting")
    out, _ = small_world
    with pytest.raises(FileExistsError, match="another run"):  # would leave shards 1 and 2 stale
        synthetic.synthesize_world(out, seed=0, years=(2014, 2014), samples_per_year=5)
    # a whole config block (with keys meant for the static set) is accepted
    summary = synthetic.synthesize_world(tmp_path / "cfg", seed=0, **{**synthetic.DEFAULTS, **SMALL,
                                                                      "samples_per_year": 2})
    assert summary["samples"] == 8


# --------------------------------------------------------------------------------------------
# Static set
# --------------------------------------------------------------------------------------------

def test_static_set(tmp_path):
    summary = synthetic.synthesize_static(tmp_path, seed=0, num_samples=200, samples_per_shard=100)
    assert summary["samples"] == 200 and summary["shards"] == 2 and summary["per_year"] == {}
    frame = shards.read_shard_metadata(tmp_path)
    assert len(frame) == 200
    assert frame["timestamp"].isna().all()
    timeless = set(world.timeless_class_ids())
    assert all(set(labels) <= timeless for labels in frame["labels"])
    assert all(len(set(labels)) == 1 for labels in frame["labels"])  # one class per image
    assert frame["colour"].isin(world.COLOURS).all()
    counts = frame["domain"].value_counts()
    assert set(counts.index) == set(world.DOMAINS) and counts.min() >= 30
    mediums = "|".join(re.escape(world.CLASSIC_MEDIUM[d][0]) for d in world.DOMAINS)
    assert frame["caption"].str.fullmatch(rf"an? ({mediums}) of .+\.").all()
    for name, colour, caption in zip(frame["label_names"], frame["colour"], frame["caption"]):
        assert colour in caption and (name[0] in caption or world.plural_name(
            world.class_names().index(name[0]), None) in caption)
    again = synthetic.synthesize_static(tmp_path / "again", seed=0, num_samples=200, samples_per_shard=100)
    assert again["samples"] == 200
    assert _shard_bytes(tmp_path / "again") == _shard_bytes(tmp_path)


def test_static_set_at_224(tmp_path):
    synthetic.synthesize_static(tmp_path, seed=3, num_samples=4, image_size=224)
    members, _ = _tar_members(tmp_path / "00000.tar")
    jpgs = [v for k, v in members.items() if k.endswith(".jpg")]
    assert len(jpgs) == 4
    assert all(Image.open(io.BytesIO(j)).size == (224, 224) for j in jpgs)
