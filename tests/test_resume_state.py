"""The resumable state of a training step (fast, unit level; tests/faults/test_faults_kill.py runs the
workflow): unusable states are set aside, and the fingerprint covers the step's inputs."""
import torch

from ticlip_core.data.layout import shards_digest, write_split_index
from ticlip_core.engine.resume import input_identity, load_resume_state, save_resume_state


def test_an_unreadable_state_is_set_aside_with_a_warning(tmp_path, capsys):
    path = tmp_path / "resume.pt"
    path.write_bytes(b"not a torch file at all")
    assert load_resume_state(path, "run a") is None
    assert not path.exists()
    assert (tmp_path / "resume.pt.unreadable").read_bytes() == b"not a torch file at all"
    err = capsys.readouterr().err
    assert f"warning: {path}: it cannot be loaded" in err and "resume.pt.unreadable" in err and "afresh" in err


def test_a_truncated_state_or_one_that_is_no_dict_is_set_aside(tmp_path, capsys):
    path = tmp_path / "resume.pt"
    save_resume_state(path, {"fingerprint": "run a", "iteration": 3, "model": {"w": torch.ones(1000)}})
    path.write_bytes(path.read_bytes()[:-700])  # cut inside the zip archive
    assert load_resume_state(path, "run a") is None
    assert (tmp_path / "resume.pt.unreadable").exists() and not path.exists()
    torch.save(torch.ones(3), path)
    assert load_resume_state(path, "run a") is None
    assert "holds a Tensor, not a training state" in capsys.readouterr().err
    assert not path.exists()


def test_a_foreign_state_is_set_aside_only_by_the_main_process(tmp_path, capsys):
    path = tmp_path / "resume.pt"
    save_resume_state(path, {"fingerprint": "run a", "iteration": 3})
    assert load_resume_state(path, "run b", set_aside=False) is None
    assert path.exists() and "warning: ignoring" in capsys.readouterr().err  # another rank: leaves it
    assert load_resume_state(path, "run a")["iteration"] == 3 and path.exists()  # its own run uses it
    assert load_resume_state(path, "run b") is None
    assert not path.exists() and torch.load(tmp_path / "resume.pt.foreign", weights_only=True)["iteration"] == 3
    assert "another configuration, from other data or from other starting weights" in capsys.readouterr().err


def _split(folder, payloads):
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in payloads.items():
        (folder / name).write_bytes(data)
    write_split_index(folder, folder.parent.name, folder.name, {name: 1 for name in payloads})
    return [str(folder / name) for name in sorted(payloads)]


def test_the_input_identity_follows_the_data_and_the_starting_weights(tmp_path):
    train = _split(tmp_path / "steps/2014/train", {"00000.tar": b"a" * 10, "00001.tar": b"b" * 10})
    val = _split(tmp_path / "steps/2014/val", {"00000.tar": b"v"})
    init = tmp_path / "prev.pt"
    init.write_bytes(b"weights 1")
    before = input_identity({"2014": train}, {"2014": val}, str(init))
    assert before == input_identity({"2014": train}, {"2014": val}, str(init))  # deterministic
    assert before["init_sha256"] and input_identity({"2014": train}, {"2014": val}, None)["init_sha256"] is None

    init.write_bytes(b"weights 2")  # another starting checkpoint under the same path
    assert input_identity({"2014": train}, {"2014": val}, str(init))["init_sha256"] != before["init_sha256"]
    _split(tmp_path / "steps/2014/val", {"00000.tar": b"w"})  # the validation split rebucketed
    changed = input_identity({"2014": train}, {"2014": val}, str(init))
    assert changed["val"] != before["val"] and changed["train"] == before["train"]
    _split(tmp_path / "steps/2014/train", {"00000.tar": b"a" * 10, "00001.tar": b"c" * 10})
    assert input_identity({"2014": train}, {"2014": val}, str(init))["train"] != changed["train"]
    assert shards_digest(train[:1]) != shards_digest(train)  # the shards used count, not just the split


def test_shards_outside_an_indexed_split_are_identified_by_their_bytes(tmp_path):
    shard = tmp_path / "hand-made.tar"
    shard.write_bytes(b"one")
    first = shards_digest([str(shard)])
    shard.write_bytes(b"two")
    assert shards_digest([str(shard)]) != first
