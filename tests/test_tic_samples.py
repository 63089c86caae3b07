"""Per-sample entries behind TiC's evaluation rows (ticlip_core.samples): every recall and accuracy
row of a checkpoint is its entries' weighted mean, the rows themselves are unchanged, and two
checkpoints' entries name the same samples (so a bootstrap over test samples pairs them)."""
import pandas as pd
import pytest
import torch

from ticlip_core import samples
from ticlip_core.class_labels import synthetic_labels
from ticlip_core.data import world
from ticlip_core.data.bucketing import step_shards
from ticlip_core.data.synthetic import synthesize_static
from ticlip_core.evaluation import recall_at_k as shared_recall_at_k
from ticlip_core.models import create_model
from ticlip_core.tic.evaluate import SAMPLES_ATOL, evaluate_checkpoint, evaluate_checkpoint_samples
from tests.conftest import micro_config

STEPS = ["2014", "2015", "2016"]
SET = ["sample_set", "set_size", "sample"]


@pytest.fixture(scope="module")
def evaluated(tiny_world, tmp_path_factory):
    """Rows and entries of two differently initialised micro models, and the rows of the first
    from ``evaluate_checkpoint``."""
    static = tmp_path_factory.mktemp("static")
    synthesize_static(static, seed=0, num_samples=22, image_size=32, samples_per_shard=10)
    shards = sorted(str(p) for p in static.glob("*.tar"))
    config = micro_config()
    config["eval"].update(batch_size=16, recall_at=[1, 2], retrieval_pool_size=5)  # unequal pools of 4 and 5
    templates = config["eval"]["templates"]
    kwargs = dict(config=config, study="tic", method="m", train_step="2015", scenario="synthetic",
                  test_shards={s: step_shards(tiny_world / "steps", s, "test") for s in STEPS},
                  dynamic_labels=synthetic_labels(world.class_names(), templates),
                  static_sets={"synthetic": (shards, None),  # the synthetic world's own three tasks
                               "labelled": (shards, synthetic_labels(world.class_names(), templates)),
                               "pairs": (shards[:1], None)})
    out = []
    for seed in (0, 1):
        model, _, _, tokenizer = create_model("ticlip-vit-micro", None, seed=seed, device="cpu")
        out.append(evaluate_checkpoint_samples(model, tokenizer, **kwargs))
    model, _, _, tokenizer = create_model("ticlip-vit-micro", None, seed=0, device="cpu")
    return out, evaluate_checkpoint(model, tokenizer, **kwargs)


def test_every_row_has_entries_that_give_its_value(evaluated):
    rows, entries = evaluated[0][0]
    keyed = rows.set_index(list(samples.KEY)).index
    given = samples.row_values(entries)
    assert set(given.index) == set(keyed)  # every row is a recall or an accuracy
    assert {"retrieval", "classification", "static_retrieval", "static_objects", "static_colours",
            "static_labelled", "static_pairs"} <= set(rows.task)
    samples.check_matches(rows, entries, atol=SAMPLES_ATOL)
    retrieval = rows[rows.metric.str.contains("_R@")]
    samples.check_matches(retrieval, entries[entries.metric.str.contains("_R@")])  # float64: to 1e-9
    sets = entries.groupby("task").sample_set.unique().map(set).to_dict()
    assert sets["retrieval"] == sets["classification"] == {f"tic/test/{s}" for s in STEPS}
    assert sets["static_colours"] == {"tic/static/synthetic"} and sets["static_pairs"] == {"tic/static/pairs"}
    # mean_R@k: both directions, each half of the weight
    mean = entries[(entries.task == "retrieval") & (entries.eval_step == "2014") & (entries.metric == "mean_R@1")]
    assert len(mean) == 2 * mean.set_size.iloc[0] and mean.weight.sum() == pytest.approx(1.0)


def test_rows_are_those_of_evaluate_checkpoint(evaluated):
    rows, _ = evaluated[0][0]
    pd.testing.assert_frame_equal(rows, evaluated[1])  # the same bits


def test_two_checkpoints_name_the_same_samples(evaluated):
    (rows0, entries0), (rows1, entries1) = evaluated[0]
    assert not rows0.value.equals(rows1.value)  # different models
    key = [*samples.KEY, *SET, "weight"]
    pd.testing.assert_frame_equal(entries0[key], entries1[key])
    sizes = entries0.groupby("sample_set").set_size.first()
    assert sizes["tic/static/synthetic"] == 22 and sizes["tic/static/pairs"] == 10


def test_a_broken_entry_fails_naming_the_row(evaluated, tmp_path):
    rows, entries = evaluated[0][0]
    broken = entries.copy()
    at = broken.index[(broken.metric == "top1") & (broken.task == "classification")][0]
    broken.loc[at, "outcome"] = 1.0 - broken.loc[at, "outcome"]
    with pytest.raises(ValueError, match="differ from their entries.*classification.*top1"):
        samples.check_matches(rows, broken, atol=SAMPLES_ATOL)
    written = samples.write_samples([entries], tmp_path / "2015.samples.parquet")
    pd.testing.assert_frame_equal(samples.read_samples([tmp_path / "2015.samples.parquet"]), written)


@pytest.mark.parametrize("weighting", ["size", "equal"])
def test_recall_entries_with_several_captions_and_unequal_pools(weighting):
    g = torch.Generator().manual_seed(0)
    img = torch.nn.functional.normalize(torch.randn(7, 4, generator=g), dim=-1)
    owner = torch.tensor([0, 0, 1, 2, 3, 3, 3, 4, 5, 6])  # images 0 and 3 have several captions
    txt = torch.nn.functional.normalize(img[owner] + 0.8 * torch.randn(10, 4, generator=g), dim=-1)
    scores, per = shared_recall_at_k(img, txt, owner, (1, 2), pool_size=3, weighting=weighting,
                                     naming="tic" if weighting == "size" else "clclip", per_query=True)
    assert set(per) == set(scores)
    for name, (image, weight, credit) in per.items():
        assert (weight * credit).sum().item() / weight.sum().item() == pytest.approx(scores[name], abs=1e-12)
        assert len(image) == (7 if name.startswith(("i2t", "TR")) else 10 if "mean" not in name else 17)
    assert per["t2i_R@1" if weighting == "size" else "IR@1"][0].tolist() == sorted(owner.tolist())
