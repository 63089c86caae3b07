"""The training stream split across data-loader workers: each worker reads its own shards, the
budget is exact, every sample is reached, and the batches are the same every time."""
import pytest
import torch

from ticlip_core.tic.buffers import shard_keys
from ticlip_core.data.bucketing import step_shards
from ticlip_core.data.loader import PixelSpec, train_batches

PIXELS = PixelSpec(32, (0.5,) * 3, (0.5,) * 3)


def _tokenizer(captions):
    return torch.zeros(len(captions), 4, dtype=torch.long)


def _batches(shards, **kw):
    return list(train_batches(shards, batch_size=16, pixels=PIXELS, tokenizer=_tokenizer, seed=7,
                              shuffle_buffer=20, **kw))


@pytest.mark.filterwarnings("ignore:This DataLoader will create")  # 3 workers on a 2-core machine
@pytest.mark.parametrize("workers", [2, 3])
def test_workers_split_the_shards_and_keep_the_exact_budget(tiny_world, workers):
    shards = [s for step in ("2014", "2015", "2016") for s in step_shards(tiny_world / "steps", step, "train")]
    shard_of = {key: shard for shard in shards for key in shard_keys([shard])}
    budget = len(shard_of) * 2 + 5  # two passes and a partial last batch
    batches = _batches(shards, num_samples=budget, workers=workers)

    sizes = [len(b.keys) for b in batches]
    assert sum(sizes) == budget and sizes[:-1] == [16] * (len(sizes) - 1)
    assert all(b.images.shape[0] == b.texts.shape[0] == len(b.keys) for b in batches)
    # batch w comes from worker w: the workers' first batches come from different shards (workers
    # reading every shard would all start with the pass's first shard)
    first = [{shard_of[k] for k in b.keys} for b in batches[:workers]]
    assert all(not (first[i] & first[j]) for i in range(workers) for j in range(i)), first
    assert {k for b in batches for k in b.keys} == set(shard_of)  # every sample is reached
    again = _batches(shards, num_samples=budget, workers=workers)
    assert [b.keys for b in again] == [b.keys for b in batches]  # a resumed job replays the same stream
    assert all(torch.equal(a.images, b.images) for a, b in zip(again, batches))


def test_more_workers_than_shards_is_refused(tiny_world):
    shards = step_shards(tiny_world / "steps", "2014", "train")
    with pytest.raises(ValueError, match=rf"{len(shards)} shards cannot be split across 1 ranks x 8 data-loader"):
        _batches(shards, num_samples=32, workers=8)


# --------------------------------------------------------------------------------------------
# Bad samples: skipped and counted by reason, never fatal
# --------------------------------------------------------------------------------------------

BAD = {1: "corrupt_image", 3: "bad_caption", 5: "bad_json", 7: "bad_json", 9: "missing_member",
       11: "missing_member"}


def _bad_shard(tiny_world, path):
    """20 samples of a 2014 training shard, six of them bad (see BAD), written to ``path``."""
    import webdataset as wds

    src = step_shards(tiny_world / "steps", "2014", "train")[0]
    samples = [{k: v for k, v in s.items() if k in ("__key__", "jpg", "txt", "json")}
               for s in wds.WebDataset(src, shardshuffle=False, empty_check=False)][:20]
    samples[1]["jpg"] = samples[1]["jpg"][:40]       # truncated JPEG
    samples[3]["txt"] = b"\xff\xfe caption"           # not UTF-8
    samples[5]["json"] = b'{"caption": "unterminated'  # not JSON
    samples[7]["json"] = b"[1, 2]"                    # JSON, but not an object
    del samples[9]["txt"]
    del samples[11]["jpg"]
    with wds.TarWriter(str(path)) as sink:
        for s in samples:
            sink.write(s)
    return [s["__key__"] for i, s in enumerate(samples) if i not in BAD]


def _reasons(batches):
    total = {}
    for b in batches:
        assert b.skipped == sum(b.skipped_by_reason.values())
        for reason, n in b.skipped_by_reason.items():
            total[reason] = total.get(reason, 0) + n
    return total


def test_bad_samples_are_skipped_and_counted_by_reason_in_eval_batches(tiny_world, tmp_path):
    from ticlip_core.data.loader import SKIP_REASONS, eval_batches

    good = _bad_shard(tiny_world, tmp_path / "bad.tar")
    batches = list(eval_batches([str(tmp_path / "bad.tar")], batch_size=8, pixels=PIXELS, tokenizer=_tokenizer))
    assert [k for b in batches for k in b.keys] == good  # stored order, bad ones left out
    assert [b.skipped for b in batches] == [4, 2, 0]
    assert batches[0].skipped_by_reason == {"corrupt_image": 1, "bad_caption": 1, "bad_json": 2}
    assert _reasons(batches) == {"corrupt_image": 1, "bad_caption": 1, "bad_json": 2, "missing_member": 2}
    assert set(_reasons(batches)) <= set(SKIP_REASONS)
    assert all(b.images.shape[0] == b.texts.shape[0] == len(b.keys) == len(b.meta) for b in batches)


def test_bad_samples_are_skipped_and_counted_by_reason_in_train_batches(tiny_world, tmp_path):
    good = _bad_shard(tiny_world, tmp_path / "bad.tar")
    # one pass exactly (the last sample is good; a buffer of 1 keeps the stored order)
    batches = list(train_batches([str(tmp_path / "bad.tar")], batch_size=7, pixels=PIXELS, tokenizer=_tokenizer,
                                 num_samples=len(good), seed=7, shuffle_buffer=1))
    assert sorted(k for b in batches for k in b.keys) == sorted(good)
    assert sum(b.skipped for b in batches) == 6
    assert _reasons(batches) == {"corrupt_image": 1, "bad_caption": 1, "bad_json": 2, "missing_member": 2}
