"""Faults: a collapsed or diverged model, and damaged, non-finite or unwritable checkpoints.

1. A collapsed model (constant features) scores exactly chance in both studies' retrieval and
   classification, and a model with NaN weights is refused, naming the checkpoint.
2. A truncated checkpoint fails to load, naming its path and what to do.
3. NaN weights are neither saved (nothing written) nor loaded (path and tensor named).
4. A save onto a full disk (a 64 KiB tmpfs) says so, naming the path, leaves no ``.tmp`` and
   keeps the earlier file.
"""
import os
import subprocess

import pytest
import torch

from ticlip_core.clclip.scoring import class_accuracy, retrieval_recalls
from ticlip_core.data.synthetic import synthesize_world
from ticlip_core.evaluation import recall_at_k as shared_recall_at_k, zero_shot_accuracy
from ticlip_core.metrics import session_accuracies, ut_acc_ost
from ticlip_core.tic.evaluate import evaluate_checkpoint, recall_at_k
from ticlip_core.models import (CorruptCheckpointError, NonFiniteWeightsError, create_model, load_checkpoint,
                                save_checkpoint)
from ticlip_core.retrieval import NonFiniteFeaturesError

MODEL = "ticlip-vit-micro"
EVAL = {"eval": {"batch_size": 8, "recall_at": [1, 2], "retrieval_pool_size": 4}}
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """One shard of 8 synthetic image-caption pairs."""
    root = tmp_path_factory.mktemp("world")
    synthesize_world(root, seed=0, years=(2014, 2014), samples_per_year=8, samples_per_shard=8)
    return sorted(str(p) for p in root.glob("*.tar"))


def _collapsed_model():
    """A micro CLIP whose last layer norms output a constant: every image feature is the same
    unit vector, and so is every text feature."""
    model, _, _, tokenizer = create_model(MODEL, None, seed=0)
    with torch.no_grad():
        for norm in (model.visual.ln_post, model.ln_final):
            norm.weight.zero_()
            norm.bias.copy_(torch.linspace(-1, 1, len(norm.bias)))
    return model.eval(), tokenizer


def test_constant_features_score_chance_in_both_studies():
    unit = torch.nn.functional.normalize(torch.ones(12, 8), dim=-1)
    tic = recall_at_k(unit, unit, [1, 2, 3], pool_size=4)  # TiC: 3 pools of 4
    assert all(tic[f"{d}_R@{k}"] == pytest.approx(k / 4) for d in ("i2t", "t2i", "mean") for k in (1, 2, 3))
    clclip = shared_recall_at_k(unit, unit, torch.arange(12), ks=(1, 2), pool_size=6, weighting="equal",
                                naming="clclip")  # CL-CLIP: 2 folds of 6
    assert clclip == pytest.approx({"TR@1": 1 / 6, "TR@2": 2 / 6, "IR@1": 1 / 6, "IR@2": 2 / 6})
    zs = zero_shot_accuracy(unit, torch.ones(5, 8), [{i % 5} for i in range(12)], ks=(1, 2))
    assert zs == pytest.approx({"top1": 1 / 5, "top2": 2 / 5})


def test_a_collapsed_model_scores_chance_end_to_end(shards):
    model, tokenizer = _collapsed_model()
    rows = evaluate_checkpoint(model, tokenizer, config=EVAL, study="tic", method="collapsed", train_step="2014",
                               test_shards={"2014": shards}, dynamic_labels=None, static_sets={})
    scores = dict(zip(rows.metric, rows.value))
    assert scores["mean_R@1"] == pytest.approx(1 / 4) and scores["mean_R@2"] == pytest.approx(2 / 4)
    # CL-CLIP: 4 classes, crops of each; an argmax would put every crop in class 0
    images = torch.randint(0, 256, (8, 32, 32, 3), dtype=torch.uint8)
    labels = torch.arange(8) % 4
    correct = class_accuracy(model, tokenizer, images, labels, ["cat", "dog", "car", "tree"], ["a {}."], CPU)
    assert correct.tolist() == pytest.approx([0.25] * 8)
    assert ut_acc_ost(correct) == pytest.approx(0.25)
    assert session_accuracies(correct, labels, [[0, 1], [2, 3]]) == pytest.approx([0.25, 0.25])
    recalls = retrieval_recalls(model, tokenizer, images, [f"photo {i}" for i in range(8)], torch.arange(8), CPU,
                                fold_size=8)
    assert recalls == pytest.approx({"TR@1": 1 / 8, "TR@5": 5 / 8, "IR@1": 1 / 8, "IR@5": 5 / 8})


def test_nan_features_are_refused_naming_the_checkpoint(shards):
    model, _, _, tokenizer = create_model(MODEL, None, seed=0)
    with torch.no_grad():
        model.visual.proj.fill_(float("nan"))  # as a diverged run's weights, loaded without checks
    with pytest.raises(NonFiniteFeaturesError, match="image features from /runs/tic/x/2014/model.pt on evaluation "
                                                     "set .* hold 256 non-finite"):
        evaluate_checkpoint(model.eval(), tokenizer, config=EVAL, study="tic", method="x", train_step="2014",
                            test_shards={"2014": shards}, dynamic_labels=None, static_sets={},
                            checkpoint="/runs/tic/x/2014/model.pt")
    images = torch.zeros(2, 32, 32, 3, dtype=torch.uint8)
    with pytest.raises(NonFiniteFeaturesError, match="classification logits from the CL-CLIP model"):
        class_accuracy(model, tokenizer, images, torch.tensor([0, 1]), ["cat", "dog"], ["a {}."], CPU)


def _small_state(n: int = 64) -> dict:
    torch.manual_seed(0)
    return {"layer.weight": torch.randn(n), "layer.bias": torch.randn(4)}


def _small_model(n: int = 64) -> torch.nn.Module:
    model = torch.nn.Module()
    model.layer = torch.nn.Module()
    model.layer.weight = torch.nn.Parameter(torch.zeros(n))
    model.layer.bias = torch.nn.Parameter(torch.zeros(4))
    return model


def test_truncated_checkpoint_is_named(tmp_path):
    path = tmp_path / "results" / "model.pt"
    save_checkpoint(_small_state(), path)
    path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])  # an interrupted copy
    with pytest.raises(CorruptCheckpointError, match=rf"{path} is truncated or corrupt.*delete it and rerun"):
        load_checkpoint(_small_model(), path)


def test_nan_checkpoint_is_neither_saved_nor_loaded(tmp_path):
    state = _small_state()
    state["layer.bias"][2] = float("nan")
    path = tmp_path / "model.pt"
    with pytest.raises(NonFiniteWeightsError, match=rf"{path}: refusing to save .* in layer.bias"):
        save_checkpoint(state, path)
    assert os.listdir(tmp_path) == []
    torch.save(state, path)  # written by something that does not check
    with pytest.raises(NonFiniteWeightsError, match=rf"{path}: refusing to load .* in layer.bias"):
        load_checkpoint(_small_model(), path)


def test_full_disk_is_named_and_leaves_the_earlier_file(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a 64 KiB tmpfs here: {mounted.stderr.strip()}")
    try:
        path = disk / "model.pt"
        save_checkpoint(_small_state(), path)  # an earlier, small checkpoint
        earlier = path.read_bytes()
        with pytest.raises(OSError, match=rf"could not write {path}: no space left on the disk") as err:
            save_checkpoint(_small_state(100_000), path)  # 400 KB into 64 KiB
        assert "the earlier file there is unchanged" in str(err.value)
        assert os.listdir(disk) == ["model.pt"] and path.read_bytes() == earlier
        load_checkpoint(_small_model(), path)  # still loads
    finally:
        subprocess.run(["umount", str(disk)], check=True)
