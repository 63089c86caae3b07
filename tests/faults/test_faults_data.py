"""Fault injection on the data path and the resume state: damaged shards fail with a named
error before anything reads them; bad samples are skipped and counted; an unusable or stale
resume state is set aside and the step trains afresh. Each scenario takes seconds."""
import json
import shutil
import tarfile

import pandas as pd
import pytest
import torch
import webdataset as wds

import ticlip_core.engine.loop as loop_module
from conftest import micro_config
from ticlip_core.data.layout import ShardIntegrityError, step_shards, write_split_index
from ticlip_core.data.loader import PixelSpec, eval_batches
from ticlip_core.models import create_model, save_checkpoint
from ticlip_core.tic.train import train_step


def _copy_split(tiny_world, tmp_path, step="2014", split="train"):
    """A private copy of one split of the session's world (which other tests share)."""
    steps = tmp_path / "steps"
    shutil.copytree(tiny_world / "steps" / step / split, steps / step / split)
    return steps


def _members(tar):
    """(name, end of its 512-byte-padded data) of every member of ``tar``, in order."""
    with tarfile.open(tar) as tf:
        return [(m.name, m.offset_data + -(-m.size // 512) * 512, m.offset_data) for m in tf.getmembers()]


def _truncate(path, size):
    with open(path, "r+b") as f:
        f.truncate(size)


def test_a_shard_truncated_inside_a_member_fails_naming_it(tiny_world, tmp_path):
    steps = _copy_split(tiny_world, tmp_path)
    shard = steps / "2014/train/00001.tar"
    _, _, data_start = _members(shard)[4]
    _truncate(shard, data_start + 10)
    with pytest.raises(ShardIntegrityError, match=rf"{shard}: truncated: {data_start + 10} bytes, the index says "
                                                  r"\d+(.|\n)*rerun the bucket rule"):
        step_shards(steps, "2014", "train")


def test_a_shard_truncated_at_a_member_boundary_fails_though_it_reads_as_a_shorter_shard(tiny_world, tmp_path):
    steps = _copy_split(tiny_world, tmp_path)
    shard = steps / "2014/train/00000.tar"
    members = _members(shard)
    assert [n.rsplit(".", 1)[1] for n, _, _ in members[:3]] == ["jpg", "json", "txt"]
    _truncate(shard, members[3 * 5 - 1][1])  # right after the fifth sample's last member
    # the hazard: webdataset reads the damaged shard without a word, as five samples
    assert len(list(wds.WebDataset(str(shard), shardshuffle=False, empty_check=False))) == 5
    with pytest.raises(ShardIntegrityError, match=rf"step '2014' train split does not match its index(.|\n)*"
                                                  rf"{shard}: truncated"):
        step_shards(steps, "2014", "train")


def test_a_changed_shard_of_the_same_size_fails_on_its_checksum(tiny_world, tmp_path):
    steps = _copy_split(tiny_world, tmp_path, split="test")
    shard = steps / "2014/test/00000.tar"
    _, _, data_start = _members(shard)[0]
    data = bytearray(shard.read_bytes())
    data[data_start + 100] ^= 0xFF  # one flipped bit pattern inside the first JPEG
    shard.write_bytes(bytes(data))
    with pytest.raises(ShardIntegrityError, match=rf"{shard}: changed: sha256 .* differs from the index's"):
        step_shards(steps, "2014", "test")


def test_an_extra_or_a_missing_shard_fails_naming_it(tiny_world, tmp_path):
    steps = _copy_split(tiny_world, tmp_path)
    folder = steps / "2014/train"
    shutil.copy(folder / "00000.tar", folder / "00007.tar")
    with pytest.raises(ShardIntegrityError, match=rf"{folder / '00007.tar'}: extra tar file, not in index.json"):
        step_shards(steps, "2014", "train")
    (folder / "00007.tar").unlink()
    (folder / "00001.tar").unlink()
    with pytest.raises(ShardIntegrityError, match=rf"{folder / '00001.tar'}: missing \(listed in index.json\)"):
        step_shards(steps, "2014", "train")


# --------------------------------------------------------------------------- bad samples

BAD_COUNTS = {"corrupt_image": 1, "bad_caption": 1, "bad_json": 2, "missing_member": 2}


def _split_with_bad_samples(tiny_world, tmp_path):
    """A bucketed, indexed 2014 train split of 24 samples, six of them bad (BAD_COUNTS)."""
    src = step_shards(tiny_world / "steps", "2014", "train")[0]
    samples = [{k: v for k, v in s.items() if k in ("__key__", "jpg", "txt", "json")}
               for s in wds.WebDataset(src, shardshuffle=False, empty_check=False)][:24]
    samples[2]["jpg"] = samples[2]["jpg"][:40]
    samples[6]["txt"] = "café".encode("latin-1")
    samples[9]["json"] = b"{broken"
    samples[13]["json"] = b'"a string"'
    del samples[15]["txt"]
    del samples[18]["jpg"]
    folder = tmp_path / "steps/2014/train"
    folder.mkdir(parents=True)
    with wds.TarWriter(str(folder / "00000.tar")) as sink:
        for s in samples:
            sink.write(s)
    write_split_index(folder, "2014", "train", {"00000.tar": len(samples)})
    return step_shards(tmp_path / "steps", "2014", "train"), len(samples) - 6


def test_bad_samples_are_skipped_and_counted_by_training_and_evaluation(tiny_world, tmp_path):
    shards, good = _split_with_bad_samples(tiny_world, tmp_path)
    # one pass over the shard: a buffer of 1 keeps the stored order, and its last sample is good
    cfg = micro_config(budget_samples=good, batch_size=6, shuffle_buffer=1)
    out = train_step(cfg, method_name="sequential", step="2014", shards_by_step={"2014": shards},
                     init_checkpoint=None, out_model=str(tmp_path / "m/model.pt"),
                     out_log=str(tmp_path / "m/log.csv"), out_compute=str(tmp_path / "m/compute.json"))
    assert out["samples_seen"] == good and out["skipped_corrupt"] == 6
    compute = json.loads((tmp_path / "m/compute.json").read_text())
    assert compute["skipped_by_reason"] == BAD_COUNTS and compute["skipped_corrupt"] == 6
    assert pd.read_csv(tmp_path / "m/log.csv")["skipped_corrupt"].iloc[-1] == 6

    batches = list(eval_batches(shards, batch_size=10, pixels=PixelSpec(32, (0.5,) * 3, (0.5,) * 3)))
    assert sum(len(b.keys) for b in batches) == good and sum(b.skipped for b in batches) == 6
    by_reason = {}
    for b in batches:
        for reason, n in b.skipped_by_reason.items():
            by_reason[reason] = by_reason.get(reason, 0) + n
    assert by_reason == BAD_COUNTS


# --------------------------------------------------------------------------- resume state

class Killed(Exception):
    """Stands for a job killed right after it saved its resumable state."""


def _run(tmp_path, shards, step="2014", init=None, **train):
    # steps start a fresh AdamW: the resume state is what these tests are about (carrying: test_optimizer_carry)
    cfg = micro_config(**{"budget_samples": 64, "batch_size": 16, "resume_every": 2, "carry_optimizer": False,
                          **train})
    (tmp_path / "m").mkdir(exist_ok=True)  # Snakemake makes the output's folder
    return train_step(cfg, method_name="sequential", step=step, shards_by_step=shards, init_checkpoint=init,
                      out_model=str(tmp_path / "m/model.pt"), out_log=str(tmp_path / "m/log.csv"),
                      out_compute=str(tmp_path / "m/compute.json"))


def _interrupted(monkeypatch, tmp_path, shards, **kw):
    """Run until the first resumable state is saved (iteration 2 of 4); return its bytes."""
    real = loop_module.save_resume_state

    def save_then_die(path, state):
        real(path, state)
        raise Killed

    with monkeypatch.context() as m:
        m.setattr(loop_module, "save_resume_state", save_then_die)
        with pytest.raises(Killed):
            _run(tmp_path, shards, **kw)
    return (tmp_path / "m/resume.pt").read_bytes()


def test_a_garbage_resume_state_is_set_aside_and_the_step_trains_afresh(tiny_world, tmp_path, capfd):
    (tmp_path / "m").mkdir()
    (tmp_path / "m/resume.pt").write_bytes(b"\x00garbage" * 100)
    out = _run(tmp_path, {"2014": step_shards(tiny_world / "steps", "2014", "train")}, budget_samples=32)
    assert out["samples_seen"] == 32 and (tmp_path / "m/model.pt").is_file()
    assert (tmp_path / "m/resume.pt.unreadable").read_bytes() == b"\x00garbage" * 100
    assert not (tmp_path / "m/resume.pt").exists()
    err = capfd.readouterr().err
    assert f"warning: {tmp_path / 'm/resume.pt'}: it cannot be loaded" in err and "resuming" not in err


def test_a_state_saved_on_other_training_data_is_not_reused(tiny_world, tmp_path, monkeypatch, capfd):
    steps = _copy_split(tiny_world, tmp_path)
    shards = {"2014": step_shards(steps, "2014", "train")}
    saved = _interrupted(monkeypatch, tmp_path, shards)
    _run(tmp_path, shards)  # the same inputs: resumed (what the next case must not do)
    assert "resuming sequential at '2014' from iteration 2" in capfd.readouterr().err

    (tmp_path / "m/resume.pt").write_bytes(saved)
    folder = steps / "2014/train"
    index = json.loads((folder / "index.json").read_text())
    samples = list(wds.WebDataset(str(folder / "00000.tar"), shardshuffle=False, empty_check=False))
    with wds.TarWriter(str(folder / "00000.tar")) as sink:  # rebucketed with one caption changed
        for i, s in enumerate(samples):
            s = {k: v for k, v in s.items() if k in ("__key__", "jpg", "txt", "json")}
            sink.write({**s, "txt": b"a different caption"} if i == 0 else s)
    write_split_index(folder, "2014", "train", {n: e["samples"] for n, e in index["shards"].items()})
    out = _run(tmp_path, {"2014": step_shards(steps, "2014", "train")})
    err = capfd.readouterr().err
    assert "resuming" not in err and "from other data" in err
    assert out["samples_seen"] == 64 and (tmp_path / "m/resume.pt.foreign").read_bytes() == saved


def test_a_state_saved_from_other_starting_weights_under_the_same_path_is_not_reused(
        tiny_world, tmp_path, monkeypatch, capfd):
    shards = {s: step_shards(tiny_world / "steps", s, "train") for s in ("2014", "2015")}
    cfg = micro_config()
    model = create_model(cfg["model"]["name"], None, seed=1)[0]
    init = tmp_path / "prev.pt"
    save_checkpoint(model.state_dict(), init)
    saved = _interrupted(monkeypatch, tmp_path, shards, step="2015", init=str(init))
    _run(tmp_path, shards, step="2015", init=str(init))
    assert "resuming sequential at '2015' from iteration 2" in capfd.readouterr().err

    (tmp_path / "m/resume.pt").write_bytes(saved)
    save_checkpoint({k: v + 0.01 if v.is_floating_point() else v for k, v in model.state_dict().items()}, init)
    out = _run(tmp_path, shards, step="2015", init=str(init))  # the previous step retrained
    err = capfd.readouterr().err
    assert "resuming" not in err and "other starting weights" in err
    assert out["samples_seen"] == 64 and (tmp_path / "m/resume.pt.foreign").read_bytes() == saved
    assert torch.load(tmp_path / "m/model.pt", weights_only=True).keys() == model.state_dict().keys()
