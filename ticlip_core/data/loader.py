"""Streaming webdataset pipelines for training and evaluation.

Samples are decoded one at a time, so a bad sample is skipped and counted instead of
failing the job (README, "Bad input and interruption"): a corrupt image, a caption that is not UTF-8, a
sample JSON that does not parse to an object, or a sample without its image or caption
(``SKIP_REASONS``). Each batch carries the number skipped while it was assembled, in total
and by reason, so the counts survive data-loader workers.

Pixels are normalised per batch, not per sample: at 32x32 torchvision's per-sample
``ToTensor``/``Normalize`` cost five times the JPEG decode and halved training throughput
(see README, Speed). The result equals open_clip's validation transform (shortest-side
bicubic resize, centre crop, mean/std normalisation); training uses no augmentation.

A training job usually streams its shards more than once (its sample budget is 1.5-4 passes),
and at 32x32 reading and decoding is about half of a step's time. ``train_batches`` therefore
keeps the decoded samples of whole shards in memory up to ``cache_mb`` (``_ShardCache``) and
takes later passes' samples of those shards from there; the batches are the same either way.
"""
from __future__ import annotations

import functools
import io
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
import webdataset as wds
from PIL import Image
from webdataset.tariterators import tarfile_samples

from ticlip_core.data.pixels import PixelSpec


#: Why a sample is skipped: its image does not decode, its caption is not UTF-8, its JSON does
#: not parse to an object, or it lacks its image (.jpg) or caption (.txt). (The JSON is optional.)
SKIP_REASONS = ("corrupt_image", "bad_caption", "bad_json", "missing_member")


@dataclass
class Batch:
    """Decoded good samples of one batch, and how many bad ones were dropped assembling it."""

    images: torch.Tensor
    texts: torch.Tensor
    captions: list[str]
    keys: list[str]
    meta: list[dict]
    skipped: int  # bad samples dropped while this batch was assembled (all reasons)
    #: the same, by reason (keys from SKIP_REASONS; reasons with no sample left out)
    skipped_by_reason: dict[str, int] = field(default_factory=dict)


def _decode(pixels: PixelSpec):
    def decode(sample: dict) -> dict:
        key = sample["__key__"]

        def bad(reason: str, detail: str) -> dict:
            return {"__key__": key, "corrupt": reason, "detail": detail}

        missing = [ext for ext in ("jpg", "txt") if ext not in sample]
        if missing:
            return bad("missing_member", f"no .{' or .'.join(missing)} member")
        try:
            caption = sample["txt"].decode("utf-8")
        except UnicodeDecodeError as err:
            return bad("bad_caption", repr(err))
        try:
            meta = json.loads(sample["json"]) if "json" in sample else {}
        except ValueError as err:  # JSONDecodeError and UnicodeDecodeError both are
            return bad("bad_json", repr(err))
        if not isinstance(meta, dict):
            return bad("bad_json", f"a JSON {type(meta).__name__}, not an object")
        try:
            with Image.open(io.BytesIO(sample["jpg"])) as img:
                array = pixels.to_array(img)
        except Exception as err:  # PIL raises several types for truncated or corrupt files
            return bad("corrupt_image", repr(err))
        return {"__key__": key, "pixels": array, "caption": caption, "meta": meta}
    return decode


def _collate(samples: list[dict], pixels: PixelSpec, tokenizer: Callable | None) -> Batch:
    good = [s for s in samples if "corrupt" not in s]
    captions = [s["caption"] for s in good]
    by_reason: dict[str, int] = {}
    for s in samples:
        if "corrupt" in s:
            by_reason[s["corrupt"]] = by_reason.get(s["corrupt"], 0) + 1
    return Batch(
        images=pixels.to_tensor([s["pixels"] for s in good]) if good else torch.empty(0),
        texts=tokenizer(captions) if (tokenizer is not None and good) else torch.empty(0, dtype=torch.long),
        captions=captions,
        keys=[s["__key__"] for s in good],
        meta=[s["meta"] for s in good],
        skipped=len(samples) - len(good),
        skipped_by_reason=by_reason,
    )


def train_batches(shards: list[str], *, batch_size: int, pixels: PixelSpec, tokenizer: Callable,
                  num_samples: int, seed: int, shuffle_buffer: int,
                  keep_keys: set[str] | None = None,
                  restricted_shards: set[str] | None = None,
                  rank: int = 0, world_size: int = 1, split: str = "shards", workers: int = 0,
                  cache_mb: float = 0) -> Iterator[Batch]:
    """Yield shuffled training batches until exactly ``num_samples`` good samples have been seen.

    The shard list is reshuffled and streamed again as often as the budget needs (each pass
    with its own seed), so sampling is uniform over the union of ``shards``. ``keep_keys``
    restricts the stream to a subset of keys (replay buffers): in ``restricted_shards`` only,
    or in every shard when ``restricted_shards`` is None.

    With ``world_size`` > 1 (data-parallel training), ``batch_size`` and ``num_samples`` are
    this rank's, and the ranks see disjoint data: ``split="shards"`` gives each rank every
    ``world_size``-th shard of each pass (webdataset's way: no rank reads another's shards);
    ``split="samples"`` streams every shard on every rank and keeps every ``world_size``-th
    sample of the seeded order, so that within a pass the ranks' batches together are exactly
    the one-process batch of ``world_size`` times the size (reads all, decodes its own).

    ``workers`` > 0 decodes in that many data-loader processes, which split this rank's share
    the same way (``rank * workers + worker`` of ``world_size * workers`` parts); worker ``w``
    assembles batches ``w``, ``w + workers``, ... and the loader returns them in that order, so
    the stream stays deterministic for a given number of workers (a resumed job replays it).

    ``cache_mb`` > 0 keeps the decoded samples of each whole shard this process has read, up to
    that many MB (``_ShardCache``; with ``workers`` > 0 each worker keeps its own, within an equal
    share of it), and later passes take them from memory instead of reading and decoding the tar
    again; a shard that does not fit is streamed each pass. The batches are bit-identical with
    and without it.
    """
    if split not in ("shards", "samples"):
        raise ValueError(f"train_batches: split must be 'shards' or 'samples', not {split!r}")
    if not shards:
        raise ValueError("train_batches: no training shards")
    if not cache_mb >= 0:
        raise ValueError(f"train_batches: cache_mb must be >= 0 (0: no cache), not {cache_mb!r}")
    parts = world_size * max(workers, 1)
    if parts > 1 and split == "shards" and len(shards) < parts:
        raise ValueError(f"train_batches: {len(shards)} shards cannot be split across {world_size} ranks x "
                         f"{max(workers, 1)} data-loader workers; use more, smaller shards "
                         "(data.samples_per_shard), fewer train.workers or train.data_split: samples")
    sizes = [min(batch_size, num_samples - start) for start in range(0, num_samples, batch_size)]
    streams = _BatchStreams(shards, sizes=sizes, pixels=pixels, tokenizer=tokenizer, seed=seed,
                            shuffle_buffer=shuffle_buffer, keep_keys=keep_keys,
                            restricted_shards=restricted_shards, rank=rank, world_size=world_size, split=split,
                            workers=workers, cache_mb=cache_mb)
    if workers == 0:
        return streams.part_batches(rank, world_size, sizes)
    # batch_size=None: each item is already a batch; in-order delivery keeps the order fixed
    return iter(torch.utils.data.DataLoader(streams, batch_size=None, num_workers=workers,
                                            persistent_workers=False, prefetch_factor=2))


@dataclass
class _BatchStreams(torch.utils.data.IterableDataset):
    """The batches of one rank; iterated in a data-loader worker, that worker's share of them."""

    shards: list[str]
    sizes: list[int]  # good samples in each of the rank's batches, in order
    pixels: PixelSpec
    tokenizer: Callable
    seed: int
    shuffle_buffer: int
    keep_keys: set[str] | None
    restricted_shards: set[str] | None
    rank: int
    world_size: int
    split: str
    workers: int
    cache_mb: float = 0

    def __post_init__(self):
        super().__init__()

    def __iter__(self) -> Iterator[Batch]:
        info = torch.utils.data.get_worker_info()
        worker = info.id if info is not None else 0
        n = max(self.workers, 1)
        return self.part_batches(self.rank * n + worker, self.world_size * n, self.sizes[worker::n])

    def part_batches(self, part: int, parts: int, sizes: list[int]) -> Iterator[Batch]:
        """Batches of ``sizes`` good samples from part ``part`` of ``parts`` of the seeded stream."""
        pending, pending_good, done = [], 0, 0
        if not sizes:
            return
        for sample in self._samples(part, parts):
            pending.append(sample)
            pending_good += "corrupt" not in sample
            if pending_good == sizes[done]:
                yield _collate(pending, self.pixels, self.tokenizer)
                pending, pending_good, done = [], 0, done + 1
                if done == len(sizes):
                    return

    def _samples(self, part: int, parts: int) -> Iterator[dict]:
        """Decoded samples (bad ones marked) of this part, pass after pass, without end."""
        def keep(sample: dict) -> bool:
            if self.keep_keys is None or (self.restricted_shards is not None
                                          and sample["__url__"] not in self.restricted_shards):
                return True
            return sample["__key__"] in self.keep_keys

        # Made here, so each data-loader worker (iterating its own copy) has its own, with an
        # equal share of the limit: the job's total stays within cache_mb.
        cache = _ShardCache(self.cache_mb / max(self.workers, 1), self.pixels)
        epoch = 0
        while True:
            rng = random.Random(f"{self.seed}:{epoch}")
            urls = list(self.shards)
            rng.shuffle(urls)
            stages = [wds.SimpleShardList(urls)]
            if parts > 1 and self.split == "shards":
                stages.append(_every_nth(part, parts))
                rng = random.Random(f"{self.seed}:{epoch}:{part}")
            # The shuffle moves _ShardSample placeholders; its RNG draws depend only on how many
            # items it holds, so the order is the one the samples themselves would take.
            stages += [functools.partial(cache.read, keep=keep),
                       wds.shuffle(self.shuffle_buffer, initial=self.shuffle_buffer, rng=rng)]
            if parts > 1 and self.split == "samples":
                stages.append(_every_nth(part, parts))
            good_this_pass = 0
            for sample in wds.DataPipeline(*stages, wds.map(cache.decoded)):
                good_this_pass += "corrupt" not in sample
                yield sample
            if good_this_pass == 0:
                raise ValueError(f"train_batches: the {len(self.shards)} shards hold no usable samples"
                                 + (f" for part {part} of {parts}" if parts > 1 else ""))
            epoch += 1


#: Memory charged per cached sample besides its pixel array: its dict, key, caption, parsed
#: metadata and the array's header. A synthetic-world sample (JSON of about 20 fields, as
#: img2dataset writes) holds 3.7 KB of them, as traced by tracemalloc (tests/test_loader_cache.py).
SAMPLE_OVERHEAD_BYTES = 4096


class _ShardSample:
    """A sample read from a shard: its raw tar members until it is first needed, then the dict
    ``_decode`` makes of them, decoded once however often a cached shard is replayed."""

    __slots__ = ("raw", "decoded", "cached")

    def __init__(self, raw: dict):
        self.raw: dict | None = raw
        self.decoded: dict | None = None
        self.cached = False


class _ShardCache:
    """The samples of whole shards kept in memory, within ``limit_mb`` MB (0: none kept).

    ``read`` streams a shard's tar the first time and keeps its samples once the whole shard has
    been read, if they fit; later passes replay them from memory. Samples are decoded lazily,
    where the pipeline decoded them before the cache existed (after the shuffle and, with
    ``split="samples"``, after a part's every-n-th selection), so each part still decodes only
    the samples it uses, and each at most once. A sample is charged ``SAMPLE_OVERHEAD_BYTES`` plus
    its pixel array's bytes once decoded (none for a bad sample), and until then the larger of its
    raw members' bytes and a decoded array's. Decoding only lowers a charge, so the limit holds
    from the moment a shard is admitted.
    """

    def __init__(self, limit_mb: float, pixels: PixelSpec):
        self.limit = int(limit_mb * 2**20)
        self.array_bytes = pixels.size * pixels.size * 3
        self.decode = _decode(pixels)
        self.held = 0  # bytes charged for the cached shards
        self.shards: dict[str, list[_ShardSample]] = {}

    def charge(self, sample: _ShardSample) -> int:
        """The bytes ``sample`` is charged (see the class)."""
        if sample.decoded is not None:
            pixels = sample.decoded.get("pixels")
            return SAMPLE_OVERHEAD_BYTES + (pixels.nbytes if pixels is not None else 0)
        raw = sum(len(v) for v in sample.raw.values() if isinstance(v, bytes))
        return SAMPLE_OVERHEAD_BYTES + max(raw, self.array_bytes)

    def read(self, shards: Iterator[dict], keep: Callable[[dict], bool]) -> Iterator[_ShardSample]:
        """Pipeline stage: the samples ``keep`` accepts of each shard (``{"url": ...}`` items), in
        stored order, from memory if the shard is cached, else from its tar (and then cached if
        the whole shard fits in what is left of the limit)."""
        for shard in shards:
            url = shard["url"]
            if url in self.shards:
                yield from self.shards[url]
                continue
            kept, bound = ([], 0) if self.held < self.limit else (None, 0)
            for raw in tarfile_samples(iter([shard])):
                if not keep(raw):
                    continue
                sample = _ShardSample(raw)
                if kept is not None:
                    kept.append(sample)
                    bound += self.charge(sample)  # an upper bound: decoding lowers charges
                    if self.held + bound > self.limit:
                        kept = None  # will not fit: stream it
                yield sample
            if kept is not None:
                total = sum(self.charge(s) for s in kept)
                for s in kept:
                    s.cached = True
                self.shards[url] = kept
                self.held += total

    def decoded(self, sample: _ShardSample) -> dict:
        """``sample`` decoded (``_decode``'s dict, a bad sample marked), decoding it on first use."""
        if sample.decoded is None:
            before = self.charge(sample)
            sample.decoded, sample.raw = self.decode(sample.raw), None
            if sample.cached:
                self.held -= before - self.charge(sample)
        return sample.decoded


def _every_nth(rank: int, world_size: int):
    """A pipeline stage keeping items ``rank``, ``rank + world_size``, ... of its input."""
    def stage(items):
        for i, item in enumerate(items):
            if i % world_size == rank:
                yield item
    return stage


def eval_batches(shards: list[str], *, batch_size: int, pixels: PixelSpec,
                 tokenizer: Callable | None = None) -> Iterator[Batch]:
    """Yield the samples of ``shards`` in stored order, in batches (bad ones skipped, counted)."""
    stream = wds.DataPipeline(
        wds.SimpleShardList(list(shards)),
        wds.tarfile_to_samples(),
        wds.map(_decode(pixels)),
        wds.batched(batch_size, collation_fn=list, partial=True),
    )
    for samples in stream:
        yield _collate(samples, pixels, tokenizer)
