"""The training stream split across data-loader workers: each worker reads its own shards, the
budget is exact, every sample is reached, and the batches are the same every time."""
import pytest
import torch

from ticlip_core.buffers import shard_keys
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
