"""The evaluation layer (ticlip_core/evaluation.py) and TiC's suite on hand-made features with exact
expected values; the one prompt classifier against open_clip's."""
import open_clip
import pytest
import torch

from ticlip_core.evaluation import EncodedSet, class_text_features, eval_classifier, zero_shot_accuracy
from ticlip_core.evaluation import recall_at_k as shared_recall_at_k
from ticlip_core.models import create_model
from ticlip_core.tic.evaluate import NonFiniteFeaturesError, all_captions, recall_at_k
from ticlip_core.retrieval import dot_scores, topk_credit


def _pairs():
    # 4 pairs in 2-D. Image i's best text: 0->0, 1->0 (wrong), 2->2, 3->2 (wrong).
    img = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    txt = torch.tensor([[1.0, 0.0], [0.8, 0.2], [0.0, 1.0], [0.2, 0.8]])
    return img, txt


def test_recall_at_1_and_2_exact():
    img, txt = _pairs()
    r = recall_at_k(img, txt, ks=[1, 2], pool_size=4)
    # i2t: image1 scores text0 (0.9) above text1 (0.74); image3 scores text2 (0.9) above text3 (0.74)
    assert r["i2t_R@1"] == pytest.approx(0.5)
    # t2i: text1 scores image1 (0.74) vs image0 (0.8) -> wrong; text3 likewise -> wrong
    assert r["t2i_R@1"] == pytest.approx(0.5)
    assert r["mean_R@1"] == pytest.approx(0.5)
    assert r["i2t_R@2"] == pytest.approx(1.0)
    assert r["t2i_R@2"] == pytest.approx(1.0)


def test_recall_pools_limit_the_candidates():
    img, txt = _pairs()
    # pools {0,1} and {2,3}: same confusions as above, so R@1 stays 0.5, and with pools
    # {0},{1},{2},{3} every query has one candidate: R@1 = 1
    assert recall_at_k(img, txt, ks=[1], pool_size=2)["i2t_R@1"] == pytest.approx(0.5)
    assert recall_at_k(img, txt, ks=[1], pool_size=1)["i2t_R@1"] == pytest.approx(1.0)


def test_tied_candidates_get_the_expected_credit_of_a_random_order():
    img = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    txt = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    # identical candidates: a random order puts the partner first half the time (the old rule,
    # counting only strictly higher candidates, gave 1.0)
    r = recall_at_k(img, txt, ks=[1, 2], pool_size=2)
    assert r["mean_R@1"] == pytest.approx(0.5) and r["mean_R@2"] == 1.0


@pytest.mark.parametrize("n, pool_size", [(12, 4), (12, 12), (10, 4)])
def test_constant_features_score_chance(n, pool_size):
    feats = torch.nn.functional.normalize(torch.ones(n, 8), dim=-1)
    pool = n / max(1, round(n / pool_size))  # (10, 4): two pools of 5
    r = recall_at_k(feats, feats.clone(), ks=[1, 2, 3], pool_size=pool_size)
    for k in (1, 2, 3):
        for d in ("i2t", "t2i", "mean"):
            assert r[f"{d}_R@{k}"] == pytest.approx(k / pool, abs=1e-12), (d, k)


def test_partly_tied_scores():
    # image 0 scores its own text 0.5, one text 1.0 and two others 0.5: rank 1, tied with 2
    img = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])
    txt = torch.tensor([[0.5, 0.0], [1.0, 0.0], [0.5, 0.0], [0.5, 0.0]])
    r = recall_at_k(img, txt, ks=[1, 2, 3, 4], pool_size=4)
    # i2t image 0: R@1 0, R@2 1/3, R@3 2/3, R@4 1; images 1-3 score every text 0: k/4 each
    for k, own in ((1, 0), (2, 1 / 3), (3, 2 / 3), (4, 1)):
        assert r[f"i2t_R@{k}"] == pytest.approx((own + 3 * k / 4) / 4)


def test_non_finite_features_are_refused_naming_the_source():
    img, txt = _pairs()
    txt[2, 1] = float("nan")
    with pytest.raises(NonFiniteFeaturesError, match=r"text features from /ckpt/model.pt hold 1 non-finite.*\[2\]"):
        recall_at_k(img, txt, ks=[1], pool_size=4, source="/ckpt/model.pt")
    img[0, 0] = float("inf")
    with pytest.raises(NonFiniteFeaturesError, match="image features"):
        recall_at_k(img, txt, ks=[1], pool_size=4)
    with pytest.raises(NonFiniteFeaturesError, match="classification logits from run x"):
        zero_shot_accuracy(img, torch.eye(2), [{0}] * 4, ks=(1,), source="run x")  # (C, D) class features


def test_zero_shot_accuracy_any_of_targets():
    feats = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    classifier = torch.tensor([[1.0, 0.0, 0.7], [0.0, 1.0, 0.7]]).T  # (C, D)
    # logits: s0 -> [1, 0, .7] top1=0; s1 -> [0, 1, .7] top1=1; s2 -> [.6, .8, .98] top1=2
    out = zero_shot_accuracy(feats, classifier, [{0}, {0}, {1, 2}], ks=(1, 2))
    assert out["top1"] == pytest.approx(2 / 3)
    # top2: s1 -> {1, 2}, target {0} -> miss
    assert out["top2"] == pytest.approx(2 / 3)


def test_zero_shot_constant_model_scores_chance():
    feats = torch.zeros(6, 2)  # a collapsed model: every class scores 0 for every sample
    classifier = torch.eye(5, 2)  # (C, D)
    out = zero_shot_accuracy(feats, classifier, [{i % 5} for i in range(6)], ks=(1, 2, 5, 9))
    # top-k of 5 tied classes holds the target with probability k/5 (top9 -> top5: k <= C);
    # argmax/topk broke ties by index and gave sample 0 (class 0) and sample 5 (class 0) a hit
    assert out == pytest.approx({"top1": 1 / 5, "top2": 2 / 5, "top5": 1.0})


def test_topk_credit_with_ties_and_several_targets():
    logits = torch.tensor([[3.0, 2.0, 2.0, 2.0, 1.0]])
    # target 2: one class above, tied with 2 others -> k=1: 0, k=2: 1/3, k=3: 2/3, k=4: 1
    assert [topk_credit(logits, [2], k).item() for k in (1, 2, 3, 4)] == pytest.approx([0, 1 / 3, 2 / 3, 1])
    # targets {1, 2} among the 3 tied: k=2 misses only if the first tied class drawn is class 3: 2/3
    assert topk_credit(logits, [{1, 2}], 2).item() == pytest.approx(2 / 3)
    assert topk_credit(logits, [{1, 2}], 3).item() == 1.0
    # all tied, 2 targets of 5: k=1 -> 2/5; k=2 -> 1 - (3/5)(2/4) = 0.7
    flat = torch.zeros(1, 5)
    assert topk_credit(flat, [{0, 4}], 1).item() == pytest.approx(0.4)
    assert topk_credit(flat, [{0, 4}], 2).item() == pytest.approx(0.7)
    # no ties: the plain 0/1 answer; no target: 0
    assert topk_credit(logits, torch.tensor([0]), 1).item() == 1.0
    assert topk_credit(logits, [set()], 5).item() == 0.0
    with pytest.raises(ValueError, match="class indices"):
        topk_credit(logits, [5], 1)


@pytest.mark.parametrize("dim, n, c", [(1024, 12, 5), (64, 5, 351), (512, 5, 351)])
def test_equal_dot_products_tie_wherever_they_sit(dim, n, c):
    # A float32 matrix product sums edge tiles in another order: here identical vectors get dot
    # products a few ulps apart, which would break the constant model's ties.
    v = torch.nn.functional.normalize(torch.randn(1, dim, generator=torch.Generator().manual_seed(0)), dim=-1)
    assert dot_scores(v.repeat(n, 1), v.repeat(c, 1).T).unique().numel() == 1
    out = zero_shot_accuracy(v.repeat(n, 1), v.repeat(c, 1), [{0}] * n, ks=(1,))
    assert out["top1"] == pytest.approx(1 / c)


def test_zero_shot_per_sample_credit():
    feats = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    per = zero_shot_accuracy(feats, torch.eye(2), torch.tensor([0, 1]), ks=(1, 2), per_sample=True)
    # sample 0 right; sample 1 ties both classes: 1/2 at top-1
    assert per["top1"].tolist() == [1.0, 0.5] and per["top2"].tolist() == [1.0, 1.0]


def test_recall_pools_vs_folds_and_naming():
    # 3 images: pool {0, 1} perfect, pool {2} perfect; image 1's caption is image 0's -> pools of 2
    img = torch.eye(3)
    txt = torch.eye(3)[[0, 0, 2]]
    size = shared_recall_at_k(img, txt, None, (1,), pool_size=2, weighting="size", naming="tic")
    equal = shared_recall_at_k(img, txt, None, (1,), pool_size=2, weighting="equal", naming="clclip")
    # round(3 / 2) = 2 pools: {0, 1} and {2}. i2t: images 0, 1 tie on captions 0, 1 -> 1/2 each; image 2: 1
    assert size["i2t_R@1"] == pytest.approx((0.5 + 0.5 + 1) / 3)       # weighted by the pools' 2 and 1 queries
    assert equal["TR@1"] == pytest.approx((0.5 + 1) / 2)                # each pool counts once
    assert size["mean_R@1"] == pytest.approx((size["i2t_R@1"] + size["t2i_R@1"]) / 2)
    assert set(equal) == {"TR@1", "IR@1"}
    with pytest.raises(ValueError, match="naming"):
        shared_recall_at_k(img, txt, naming="coco")


def test_static_retrieval_scores_all_captions_of_an_image():
    # two images; image 0 lists two captions, image 1 none (it keeps its own caption's feature)
    img = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    own = torch.tensor([[0.0, 1.0], [0.0, 1.0]])  # image 0's own caption points at image 1
    enc = EncodedSet(img, own, [{"key": "a", "captions": ["wrong", "right"]}, {"key": "b"}], 0)
    vectors = {"wrong": [0.0, 1.0], "right": [1.0, 0.0]}
    texts, owners = all_captions(enc, lambda t: torch.tensor([vectors[x] for x in t]))
    assert owners.tolist() == [0, 0, 1] and texts.tolist() == [[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]
    r = recall_at_k(img, texts, [1], 2, image_of_text=owners)
    # i2t: image 0 finds "right" first; image 1's caption ties with "wrong" (image 0's) -> 1/2
    # t2i: "wrong" ranks image 1 first (miss), "right" and image 1's caption hit
    assert r["i2t_R@1"] == pytest.approx((1 + 0.5) / 2) and r["t2i_R@1"] == pytest.approx(2 / 3)
    # paired with their own captions only, both images score both captions equally: 1/2 each
    assert recall_at_k(img, own, [1], 2)["i2t_R@1"] == pytest.approx(0.5)
    assert all_captions(EncodedSet(img, own, [{}, {}], 0), None)[1] is None  # no lists: paired
    with pytest.raises(ValueError, match="'captions' must be a list"):
        all_captions(EncodedSet(img, own, [{"captions": "one"}, {}], 0), None)


def test_class_text_features_is_open_clips_classifier_bit_for_bit():
    """The one prompt classifier (training, methods, evaluation) gives the very bits of open_clip's
    ``build_zero_shot_classifier`` that TiC's evaluation used, so Table 2 cannot move; with
    gradients (training) it is the same up to the batching of the text forward."""
    model, _, _, tokenizer = create_model("ticlip-vit-micro", None, seed=0)
    model.eval()
    names = [f"class {i}" for i in range(20)]  # two open_clip batches of 16 and 4
    templates = ["a photo of a {}.", "a {} in the wild."]
    theirs = open_clip.build_zero_shot_classifier(model, tokenizer, names, [t.format for t in templates],
                                                  num_classes_per_batch=16, device="cpu")
    ours = eval_classifier(model, tokenizer, names, templates, "cpu")
    assert ours.shape == (20, theirs.shape[0]) and torch.equal(ours, theirs.T)
    trained = class_text_features(model, tokenizer, names, templates, "cpu")
    assert trained.requires_grad and torch.allclose(trained, ours, atol=1e-6)


def test_decoded_sets_read_a_set_once_and_give_the_same_features(tiny_world, tmp_path):
    import shutil

    from ticlip_core.data.bucketing import step_shards
    from ticlip_core.evaluation import DecodedSets, encode_shards

    shards = []
    for shard in step_shards(tiny_world / "steps", "2014", "test"):
        shards.append(str(tmp_path / f"{len(shards)}.tar"))
        shutil.copyfile(shard, shards[-1])
    model, _, _, tokenizer = create_model("ticlip-vit-micro", device="cpu")
    model.eval()
    plain = encode_shards(model, tokenizer, shards, 8, "cpu")
    kept, too_small = DecodedSets(64), DecodedSets(1e-4)
    first = encode_shards(model, tokenizer, shards, 8, "cpu", decoded=kept)
    encode_shards(model, tokenizer, shards, 8, "cpu", decoded=too_small)
    assert kept.used > 0 and too_small.used == 0
    for path in shards:  # a kept set is never read again
        (tmp_path / path).unlink()
    again = encode_shards(model, tokenizer, shards, 8, "cpu", decoded=kept)
    for enc in (first, again):
        assert torch.equal(enc.image_features, plain.image_features)
        assert torch.equal(enc.text_features, plain.text_features) and enc.meta == plain.meta
    with pytest.raises(FileNotFoundError):
        encode_shards(model, tokenizer, shards, 8, "cpu", decoded=too_small)
