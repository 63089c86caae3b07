"""The training stream's in-memory shard cache (``train.cache_mb``): the batches are bit-identical
with and without it over several passes (replay subsets, a corrupt sample, two ranks in both
split modes, data-loader workers, a limit that caches only some shards), a cached shard's tar is
read once, the memory held stays within the charge and the limit, and a TiC training step
writes the same checkpoint either way."""
import collections
import gc
import json
import sys
import tracemalloc

import pytest
import torch
import webdataset as wds

from conftest import micro_config
from ticlip_core.data.bucketing import step_shards
from ticlip_core.data.loader import PixelSpec, _ShardCache, train_batches
from ticlip_core.tic.buffers import shard_keys

PIXELS = PixelSpec(32, (0.5,) * 3, (0.5,) * 3)
PASSES = 3
pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny tensors; two threads only contend


def _tokenizer(captions):
    """Caption-dependent token rows, so that equal texts mean equal captions."""
    return torch.tensor([[len(c), sum(map(ord, c)), ord(c[0])] for c in captions])


@pytest.fixture(scope="module")
def shards(tiny_world, tmp_path_factory):
    """The 2014 training shards and one with a truncated JPEG and a non-UTF-8 caption."""
    train = step_shards(tiny_world / "steps", "2014", "train")
    bad = tmp_path_factory.mktemp("bad") / "bad.tar"
    samples = [{k: v for k, v in s.items() if k in ("__key__", "jpg", "txt", "json")}
               for s in wds.WebDataset(train[0], shardshuffle=False, empty_check=False)][:12]
    samples[2]["jpg"] = samples[2]["jpg"][:40]
    samples[5]["txt"] = b"\xff\xfe caption"
    with wds.TarWriter(str(bad)) as sink:
        for s in samples:
            sink.write({**s, "__key__": "bad-" + s["__key__"]})
    return train + [str(bad)]


@pytest.fixture
def opens(monkeypatch):
    """How often each shard is opened (webdataset's ``gopen``, which every tar read goes through)."""
    module = sys.modules["webdataset.gopen"]
    counts, gopen = collections.Counter(), module.gopen

    def counting(url, *args, **kwargs):
        counts[url] += 1
        return gopen(url, *args, **kwargs)

    monkeypatch.setattr(module, "gopen", counting)
    return counts


def _batches(shards, cache_mb, **kw):
    kw.setdefault("num_samples", PASSES * len(shard_keys(shards)) // kw.get("world_size", 1))
    return list(train_batches(shards, batch_size=16, pixels=PIXELS, tokenizer=_tokenizer, seed=5,
                              shuffle_buffer=30, cache_mb=cache_mb, **kw))


def _assert_identical(cached, streamed):
    assert len(cached) == len(streamed) > 0
    for a, b in zip(cached, streamed):
        assert a.keys == b.keys and a.captions == b.captions and a.meta == b.meta
        assert a.images.dtype == b.images.dtype and torch.equal(a.images, b.images)
        assert torch.equal(a.texts, b.texts)
        assert (a.skipped, a.skipped_by_reason) == (b.skipped, b.skipped_by_reason)


CASES = {
    "one process": {},
    "replay subset": "keep",
    "rank 0 of 2, split shards": dict(rank=0, world_size=2, split="shards"),
    "rank 1 of 2, split shards": dict(rank=1, world_size=2, split="shards"),
    "rank 0 of 2, split samples": dict(rank=0, world_size=2, split="samples"),
    "rank 1 of 2, split samples": dict(rank=1, world_size=2, split="samples"),
}


@pytest.mark.parametrize("case", CASES)
def test_cached_batches_equal_streamed_ones_and_each_tar_is_read_once(shards, opens, case):
    kw = CASES[case]
    if kw == "keep":  # a replay buffer: half the keys of two shards, every sample of the others
        restricted = shards[:2]
        kw = dict(keep_keys=set(shard_keys(restricted)[::2]), restricted_shards=set(restricted), num_samples=200)
    streamed = _batches(shards, 0, **kw)
    reads = sum(opens.values())
    opens.clear()
    cached = _batches(shards, 64, **kw)
    _assert_identical(cached, streamed)
    if "world_size" not in kw:  # every sample came by: the two bad ones, pass after pass
        assert sum(b.skipped for b in streamed) >= 2 * (PASSES - 1)
    assert reads > len(shards)  # several passes: streaming reads shards again ...
    assert set(opens.values()) == {1}  # ... the cache reads each once


def test_a_small_limit_caches_some_shards_and_streams_the_others(shards, opens):
    streamed = _batches(shards, 0)
    opens.clear()
    cached = _batches(shards, 0.4)  # about one shard's decoded samples
    _assert_identical(cached, streamed)
    assert 1 in opens.values() and max(opens.values()) > 1, opens


@pytest.mark.filterwarnings("ignore:This DataLoader will create")
def test_cache_in_data_loader_workers_gives_the_same_batches(shards):
    _assert_identical(_batches(shards, 64, workers=2), _batches(shards, 0, workers=2))


def test_cached_memory_stays_within_the_charge_and_the_limit(shards):
    def read_all(cache):
        for _ in cache.read(iter({"url": s} for s in shards), keep=lambda s: True):
            pass

    cache = _ShardCache(1, PIXELS)
    cache.decoded(next(cache.read(iter([{"url": shards[0]}]), keep=lambda s: True)))  # PIL's imports
    cache = _ShardCache(1, PIXELS)  # room for every shard
    tracemalloc.start()
    try:
        read_all(cache)
        gc.collect()
        raw_held, raw_charged = tracemalloc.get_traced_memory()[0], cache.held
        for samples in cache.shards.values():
            for s in samples:
                cache.decoded(s)
        gc.collect()
        decoded_held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(cache.shards) == len(shards)
    assert raw_held <= raw_charged <= cache.limit
    assert decoded_held <= cache.held < raw_charged  # the bad samples hold no pixels: a lower charge
    small = _ShardCache(0.4, PIXELS)  # about one shard's worth
    read_all(small)
    assert 0 < len(small.shards) < len(shards) and small.held <= small.limit


def test_train_step_writes_the_same_checkpoint_with_and_without_the_cache(tiny_world, tmp_path, opens):
    from ticlip_core.tic.train import train_step

    shards = step_shards(tiny_world / "steps", "2014", "train")
    budget = 2 * len(shard_keys(shards)) + 20  # two passes and part of a third
    out, reads = {}, {}
    for cache_mb in (0, 1024):
        opens.clear()
        cfg = micro_config(budget_samples=budget, batch_size=32, cache_mb=cache_mb)
        tag = f"cache{cache_mb}"
        out[cache_mb] = train_step(cfg, method_name="sequential", step="2014", shards_by_step={"2014": shards},
                                   init_checkpoint=None, out_model=str(tmp_path / f"{tag}.pt"),
                                   out_log=str(tmp_path / f"{tag}.csv"), out_compute=str(tmp_path / f"{tag}.json"))
        reads[cache_mb] = sum(opens.values())
    assert reads[1024] == len(shards) < reads[0]  # the config key reached the loader
    a, b = (torch.load(tmp_path / f"cache{mb}.pt", weights_only=True) for mb in (0, 1024))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    keep = ("samples_seen", "skipped_corrupt", "skipped_by_reason", "iterations", "macs")
    assert {k: out[0][k] for k in keep} == {k: out[1024][k] for k in keep}
    assert json.loads((tmp_path / "cache0.json").read_text())["samples_seen"] == budget
