"""Checkpoint IO: finite weights only, truncated files and failed writes named with their path."""
import errno
import os
from types import SimpleNamespace

import pytest
import torch

from ticlip_core import models
from ticlip_core.models import (CorruptCheckpointError, NonFiniteWeightsError, atomic_torch_save, create_model,
                                load_checkpoint, save_checkpoint)


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))


def test_round_trip_and_no_tmp_left(tmp_path):
    source, target = _model(), _model()
    torch.nn.init.ones_(source[0].weight)
    path = tmp_path / "sub" / "model.pt"
    save_checkpoint(source.state_dict(), path)
    assert os.listdir(path.parent) == ["model.pt"]
    load_checkpoint(target, path)
    assert torch.equal(target[0].weight, torch.ones(3, 4))


def test_non_finite_weights_are_not_saved(tmp_path):
    state = _model().state_dict()
    state["1.running_var"][1] = float("inf")
    state["0.bias"][0] = float("nan")
    path = tmp_path / "model.pt"
    with pytest.raises(NonFiniteWeightsError, match=rf"{path}: refusing to save .*NaN/inf in 0.bias, 1.running_var"):
        save_checkpoint(state, path)
    assert not tmp_path.joinpath("model.pt").exists() and os.listdir(tmp_path) == []


def test_non_finite_weights_are_not_loaded(tmp_path):
    state = _model().state_dict()
    state["0.weight"][0, 0] = float("nan")
    path = tmp_path / "model.pt"
    torch.save(state, path)  # written by something else (an older pipeline, a copy)
    model = _model()
    before = model[0].weight.clone()
    with pytest.raises(NonFiniteWeightsError, match=rf"{path}: refusing to load .*NaN/inf in 0.weight"):
        load_checkpoint(model, path)
    assert torch.equal(model[0].weight, before)  # the model was not touched


@pytest.mark.parametrize("damage", ["half", "empty", "garbage"])
def test_unreadable_checkpoint_is_named(tmp_path, damage):
    path = tmp_path / "model.pt"
    torch.save(_model().state_dict(), path)
    data = path.read_bytes()
    path.write_bytes({"half": data[:len(data) // 2], "empty": b"", "garbage": b"not a checkpoint" * 9}[damage])
    with pytest.raises(CorruptCheckpointError, match=rf"checkpoint {path} is truncated or corrupt.*"
                                                     "delete it and rerun the rule that writes it"):
        load_checkpoint(_model(), path)


def _failing_save(context: BaseException):
    """A torch.save that writes part of the file, then fails as torch does on a full disk: a
    RuntimeError (C++ stream) raised while handling the OSError of the write."""
    def save(obj, f):
        f.write(b"partial")
        try:
            raise context
        except BaseException:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")
    return save


def test_failed_write_on_a_full_disk_is_named_and_cleaned_up(tmp_path, monkeypatch):
    path = tmp_path / "model.pt"
    save_checkpoint(_model().state_dict(), path)
    earlier = path.read_bytes()
    monkeypatch.setattr(models.torch, "save", _failing_save(OSError(errno.ENOSPC, "No space left on device")))
    with pytest.raises(OSError, match=rf"could not write {path}: no space left on the disk.*"
                                      "the earlier file there is unchanged") as err:
        save_checkpoint(_model().state_dict(), path)
    assert err.value.errno == errno.ENOSPC
    assert os.listdir(tmp_path) == ["model.pt"] and path.read_bytes() == earlier


def test_failed_write_for_another_reason_says_unwritable(tmp_path, monkeypatch):
    monkeypatch.setattr(models.torch, "save", _failing_save(OSError(errno.EIO, "Input/output error")))
    monkeypatch.setattr(models.shutil, "disk_usage", lambda _: SimpleNamespace(free=10 ** 12))  # plenty
    path = tmp_path / "new" / "resume.pt"
    with pytest.raises(OSError, match=rf"could not write {path}: the disk/filesystem is full or unwritable"
                                      r".*nothing was written"):
        atomic_torch_save({"step": 3}, path)
    assert os.listdir(path.parent) == []


def test_a_bad_local_pretrained_checkpoint_is_named(tmp_path):
    source, *_ = create_model("ticlip-vit-micro", None, seed=1)
    state = {k: v.clone() for k, v in source.state_dict().items()}
    key = next(k for k, v in state.items() if v.is_floating_point())
    state[key].view(-1)[0] = float("nan")
    nan_path = tmp_path / "nan.pt"
    torch.save(state, nan_path)
    with pytest.raises(NonFiniteWeightsError, match=rf"local checkpoint '{nan_path}': refusing to load .*{key}"):
        create_model("ticlip-vit-micro", str(nan_path))
    cut = tmp_path / "cut.pt"
    save_checkpoint(source.state_dict(), cut)
    cut.write_bytes(cut.read_bytes()[:1000])
    with pytest.raises(CorruptCheckpointError, match=rf"local checkpoint '{cut}' into ticlip-vit-micro: it is "
                                                     "truncated, corrupt"):
        create_model("ticlip-vit-micro", str(cut))
