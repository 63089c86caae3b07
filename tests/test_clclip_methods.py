"""CL-CLIP towers (WM / IO / TO) and methods: FT, joint FT, LwF, GeoDL, IMM, RKR, VR-LwF."""
import copy
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from ticlip_core.clclip import towers
from ticlip_core.engine.seeds import derived_seed
from ticlip_core.clclip.methods import available_methods, get_method
from ticlip_core.clclip.context import ClassBatch, SessionContext
from ticlip_core.evaluation import class_text_features
from ticlip_core.clclip.methods.geodl import geodesic_flow_kernel, geodesic_loss, subspace
from ticlip_core.clclip.methods.imm import interpolate
from ticlip_core.clclip.methods.rkr import install_scaling
from ticlip_core.clclip.methods.vr_lwf import pseudo_sentences
from ticlip_core.models import create_model

CLASSNAMES = ["cat", "dog", "car", "tree", "boat", "house"]
TEMPLATES = ["this is a photo of {}.", "a picture of a {}."]
SOT, EOT, VOCAB, CONTEXT = 49406, 49407, 49408, 24


@pytest.fixture(scope="module")
def micro():
    torch.manual_seed(0)
    model, _, _, tokenizer = create_model("ticlip-vit-micro", seed=0)
    return model, tokenizer


def fresh(micro):
    """An independent copy of the module's micro CLIP, in train mode."""
    return copy.deepcopy(micro[0]).train()


def snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def images(n=8, seed=0):
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def make_ctx(model, tokenizer, variant="wm", setting="ost", session=0, session_classes=(0, 1, 2),
             seen_classes=(0, 1, 2), original=None, previous=None):
    state = snapshot(model)
    return SessionContext(model=model, tokenizer=tokenizer, variant=variant, setting=setting, session=session,
                          classnames=CLASSNAMES, session_classes=list(session_classes),
                          seen_classes=list(seen_classes), templates=TEMPLATES,
                          original_state=original if original is not None else state,
                          previous_state=previous if previous is not None else state, device=torch.device("cpu"))


def mst_ctx(model, tokenizer, variant="wm"):
    """MST session 1: classes 3-5 now, 0-2 before."""
    return make_ctx(model, tokenizer, variant, "mst", 1, (3, 4, 5), (0, 1, 2, 3, 4, 5))


def batch_loss(method, ctx, imgs, targets):
    """Eq. 1's cross-entropy over the session's class prompts, plus the method's extra term."""
    out = ctx.model(imgs, None)
    names = [CLASSNAMES[c] for c in ctx.session_classes]
    class_features = class_text_features(ctx.model, ctx.tokenizer, names, TEMPLATES, ctx.device)
    logits = out["logit_scale"] * out["image_features"] @ class_features.T
    loss = F.cross_entropy(logits, targets)
    labels = torch.tensor(ctx.session_classes)[targets]
    extra = method.extra_loss(ctx, ClassBatch(imgs, labels), {**out, "class_features": class_features})
    return loss, extra


def train(method, ctx, steps=3, lr=1e-2):
    """A tiny session: setup, a few AdamW steps on cross-entropy + extra loss, after_session."""
    torch.manual_seed(1)
    method.before_step(ctx)
    towers.freeze_for(ctx.model, ctx.variant)  # as the session runner does
    optimizer = torch.optim.AdamW(method.trainable_parameters(ctx), lr=lr)
    extras = []
    for step in range(steps):
        targets = torch.arange(8) % len(ctx.session_classes)
        loss, extra = batch_loss(method, ctx, images(8, seed=step), targets)
        if extra is not None:
            assert torch.isfinite(extra), f"{method.name}: non-finite extra loss"
            extras.append(extra.item())
            loss = loss + extra
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    method.after_step(ctx)
    return extras


# --- towers ------------------------------------------------------------------------------------

def test_tower_of_open_clip_names(micro):
    assert towers.tower_of("visual.conv1.weight") == "image"
    assert towers.tower_of("visual.proj") == "image"
    for name in ("token_embedding.weight", "positional_embedding", "transformer.resblocks.0.ln_1.weight",
                 "ln_final.bias", "text_projection"):
        assert towers.tower_of(name) == "text"
    assert towers.tower_of("logit_scale") == "shared"
    with pytest.raises(ValueError, match="'mystery.weight'"):
        towers.tower_of("mystery.weight")
    names = {n for n, _ in micro[0].named_parameters()}
    assert set(towers.trainable_names(micro[0], "wm")) == names - {"logit_scale"}
    assert set(towers.trainable_names(micro[0], "io")) == {n for n in names if n.startswith("visual.")}


def test_bad_variant_is_named(micro):
    with pytest.raises(ValueError, match="'image'.*wm, io, to"):
        towers.freeze_for(fresh(micro), "image")


@pytest.mark.parametrize("variant, trained, frozen", [("io", "image", "text"), ("to", "text", "image"),
                                                      ("wm", "image", None)])
def test_freezing_keeps_the_frozen_tower_bit_identical(micro, variant, trained, frozen):
    model = fresh(micro)
    ctx = make_ctx(model, micro[1], variant)
    before = snapshot(model)
    train(get_method("ft"), ctx, steps=3)
    after = model.state_dict()
    for name, _ in model.named_parameters():
        tower = towers.tower_of(name)
        if tower == "shared":
            assert torch.equal(after[name], before[name]), f"{name} (the temperature) changed"
        elif tower == frozen:
            assert torch.equal(after[name], before[name]), f"{variant}: frozen {name} changed"
        elif tower == trained or variant == "wm":
            assert not torch.equal(after[name], before[name]), f"{variant}: trained {name} did not change"


# --- VR-LwF --------------------------------------------------------------------------------------

def test_pseudo_sentences_layout():
    generator = torch.Generator().manual_seed(0)
    m = 10
    draws = torch.cat([pseudo_sentences(generator, VOCAB, 200, m, SOT, EOT, CONTEXT) for _ in range(20)])
    assert draws.shape == (4000, CONTEXT) and draws.dtype == torch.long
    assert (draws[:, 0] == SOT).all() and (draws[:, m + 1] == EOT).all()
    assert (draws[:, m + 2:] == 0).all()
    body = draws[:, 1:m + 1]
    assert not torch.isin(body, torch.tensor([0, SOT, EOT])).any()
    assert body.min() >= 1 and body.max() < SOT
    assert body.unique().numel() > 20000      # uniform over ~49k ids: 40k draws hit most of them
    # fresh draws per call, reproducible from the seed
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    first = pseudo_sentences(g1, VOCAB, 5, m, SOT, EOT, CONTEXT)
    assert torch.equal(first, pseudo_sentences(g2, VOCAB, 5, m, SOT, EOT, CONTEXT))
    assert not torch.equal(first, pseudo_sentences(g1, VOCAB, 5, m, SOT, EOT, CONTEXT))
    assert pseudo_sentences(generator, VOCAB, 1, CONTEXT - 2, SOT, EOT, CONTEXT)[0, -1] == EOT
    with pytest.raises(ValueError, match="M=23.*context length 24"):
        pseudo_sentences(generator, VOCAB, 1, CONTEXT - 1, SOT, EOT, CONTEXT)


def perturb(model, seed=0):
    """Move the image projection so the student differs from its teacher."""
    with torch.no_grad():
        model.visual.proj.add_(0.5 * torch.randn(model.visual.proj.shape, generator=torch.Generator().manual_seed(seed)))


def test_vr_lwf_is_zero_for_the_teacher_and_positive_after_a_change(micro):
    model = fresh(micro)
    ctx = mst_ctx(model, micro[1])
    method = get_method("vr_lwf", num_pseudo=16)
    method.before_step(ctx)
    assert ctx.info["vr_lwf_distilled_classes"] == 6      # MST session 1: current + previous classes
    _, extra = batch_loss(method, ctx, images(), torch.arange(8) % 3)
    assert abs(extra.item()) < 1e-5           # student == teacher at the start of the session
    perturb(model)
    _, extra = batch_loss(method, ctx, images(), torch.arange(8) % 3)
    assert extra.item() > 1e-4
    with pytest.raises(ValueError, match="length M=30"):
        get_method("vr_lwf", length=30).before_step(make_ctx(fresh(micro), micro[1]))


def test_vr_lwf_two_kl_terms_pseudo_sentences_and_seen_classes(micro):
    """The authors' loss: beta * (KL over the pseudo-sentences alone + KL over the current and
    previous classes' prompts, each its own softmax); the class term only in MST after session 0."""
    from ticlip_core.losses import kl_distillation

    model = fresh(micro)
    perturb(model)                            # student != teacher (the teacher is the session's start state)
    teacher_state = snapshot(micro[0])
    ctx = make_ctx(model, micro[1], "wm", "mst", 1, (3, 4, 5), range(6), previous=teacher_state)
    beta = 0.7
    both, pseudo_only = get_method("vr_lwf", beta=beta, num_pseudo=12), \
        get_method("vr_lwf", beta=beta, num_pseudo=12, distill_seen_classes=False)
    lwf = get_method("lwf", beta=beta)
    for method in (both, pseudo_only, lwf):
        method.before_step(ctx)
    assert ctx.info["vr_lwf_distilled_classes"] == 0   # pseudo_only's before_step ran last among the VR-LwFs
    imgs, targets = images(), torch.arange(8) % 3
    _, with_classes = batch_loss(both, ctx, imgs, targets)
    _, without = batch_loss(pseudo_only, ctx, imgs, targets)
    _, class_term = batch_loss(lwf, ctx, imgs, targets)  # LwF's KL: the seen classes' prompts
    assert class_term.item() > 1e-4
    assert with_classes.item() == pytest.approx(without.item() + class_term.item(), rel=1e-5)
    # the pseudo term alone: a softmax over the Ks pseudo-sentences only, the same draws (seed, session)
    tokens = pseudo_sentences(torch.Generator().manual_seed(derived_seed(0, "vr_lwf", 1)), VOCAB, 12, 8, SOT, EOT, CONTEXT)
    with torch.no_grad():
        old, new = pseudo_only.teacher(imgs, None), model(imgs, None)
        old_logits = old["logit_scale"] * old["image_features"] @ pseudo_only.teacher.encode_text(tokens, normalize=True).T
        new_logits = new["logit_scale"] * new["image_features"] @ model.encode_text(tokens, normalize=True).T
    assert without.item() == pytest.approx(beta * kl_distillation(new_logits, old_logits).item(), rel=1e-5)
    # OST (and MST's first session): the pseudo-sentence term only
    ost = get_method("vr_lwf", num_pseudo=12)
    ost.before_step(make_ctx(model, micro[1], previous=teacher_state))
    assert ost.teacher_classes is None


def test_vr_lwf_defaults_draw_eight_random_tokens(micro):
    """Length 8: the authors' 10-token pseudo-sentences are start, 8 random tokens, end."""
    method = get_method("vr_lwf")
    assert method.options["length"] == 8 and method.options["num_pseudo"] == 100
    ctx = make_ctx(fresh(micro), micro[1])
    method.before_step(ctx)
    tokens = method.draw(ctx)
    assert tokens.shape == (100, CONTEXT)
    assert (tokens[:, 0] == SOT).all() and (tokens[:, 9] == EOT).all() and (tokens[:, 10:] == 0).all()
    assert not torch.isin(tokens[:, 1:9], torch.tensor([0, SOT, EOT])).any()


@pytest.mark.parametrize("variant", ["wm", "io"])
def test_vr_lwf_trains_the_temperature_only_when_asked(micro, variant):
    for train_temperature in (False, True):
        model = fresh(micro)
        method = get_method("vr_lwf", num_pseudo=8, train_temperature=train_temperature)
        ctx = make_ctx(model, micro[1], variant)
        before = model.logit_scale.detach().clone()
        train(method, ctx, steps=2, lr=0.05)
        assert ctx.info["vr_lwf_train_temperature"] is train_temperature
        assert torch.equal(model.logit_scale.detach(), before) is not train_temperature
        params = method.trainable_parameters(ctx)
        assert sum(p is model.logit_scale for p in params) == int(train_temperature)
        assert all(towers.tower_of(n) in (*towers.towers_of(variant), "shared")
                   for n, p in model.named_parameters() if p.requires_grad)


def test_vr_lwf_corpus_replay_uses_the_captions(micro):
    method = get_method("vr_lwf", num_pseudo=4, corpus=["a dog on a bench.", "two red cars.", "a tree."])
    ctx = make_ctx(fresh(micro), micro[1])
    method.before_step(ctx)
    tokens = method.draw(ctx)
    assert tokens.shape == (4, CONTEXT)
    assert {tuple(t) for t in tokens.tolist()} <= {tuple(t) for t in micro[1](method.corpus).tolist()}


# --- IMM -----------------------------------------------------------------------------------------

def test_interpolate_endpoints_and_mean():
    torch.manual_seed(0)
    old = {"a": torch.randn(4, 3), "b": torch.randn(5), "c": torch.randn(2)}
    new = {k: v + torch.randn_like(v) for k, v in old.items()}
    for alpha, expect in ((0.0, old), (1.0, new)):
        merged = interpolate(old, new, alpha, ["a", "b"])
        assert torch.equal(merged["a"], expect["a"]) and torch.equal(merged["b"], expect["b"])
    merged = interpolate(old, new, 0.5, ["a"])
    assert torch.allclose(merged["a"], (old["a"] + new["a"]) / 2, atol=1e-6)
    assert torch.equal(merged["b"], new["b"]) and torch.equal(merged["c"], new["c"])   # unnamed: new's
    with pytest.raises(KeyError, match="zzz"):
        interpolate(old, new, 0.5, ["zzz"])


def test_imm_after_session_interpolates_only_the_trained_tower(micro):
    model = fresh(micro)
    ctx = make_ctx(model, micro[1], "to")
    before = snapshot(model)
    method = get_method("imm", alpha=0.25)
    method.before_step(ctx)
    towers.freeze_for(ctx.model, ctx.variant)
    optimizer = torch.optim.AdamW(method.trainable_parameters(ctx), lr=1e-2)
    loss, _ = batch_loss(method, ctx, images(), torch.arange(8) % 3)
    loss.backward()
    optimizer.step()
    tuned = snapshot(model)
    method.after_step(ctx)
    after = model.state_dict()
    for name, _ in model.named_parameters():
        if towers.tower_of(name) == "text":
            assert torch.allclose(after[name], 0.75 * before[name] + 0.25 * tuned[name], atol=1e-6)
            assert not torch.equal(after[name], tuned[name])
        else:
            assert torch.equal(after[name], before[name])
    with pytest.raises(ValueError, match="alpha"):
        get_method("imm", alpha=1.5)


# --- RKR -----------------------------------------------------------------------------------------

LINEARS = ("attn.out_proj", "mlp.c_fc", "mlp.c_proj")


def test_rkr_scales_every_linear_output_as_scaled_weights(micro):
    """scale_at linear (the authors' code): the output of each Linear of each block (attention's
    output projection too, which torch's attention never calls as a module) times its factors:
    the same model as one whose Linear rows (weight and bias) are scaled by them."""
    model = fresh(micro).eval()
    tokens = micro[1](["this is a photo of cat.", "a dog."])
    with torch.no_grad():
        reference = model(images(), tokens)
    scales = install_scaling(model, ["image", "text"])
    assert install_scaling(model, ["image", "text"])[0] is scales[0]          # idempotent
    names = sorted(n for n, _ in model.named_parameters() if n.endswith("rkr_scale"))
    assert names == sorted(f"{tower}.resblocks.0.{lin}.rkr_scale" for tower in ("transformer", "visual.transformer")
                           for lin in LINEARS)
    with torch.no_grad():
        neutral = model(images(), tokens)
    assert torch.equal(neutral["image_features"], reference["image_features"])
    assert torch.equal(neutral["text_features"], reference["text_features"])

    folded = fresh(micro).eval()
    generator = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for prefix in ("visual.transformer", "transformer"):
            for lin in LINEARS:
                scaled = model.get_submodule(f"{prefix}.resblocks.0.{lin}")
                plain = folded.get_submodule(f"{prefix}.resblocks.0.{lin}")
                s = 0.5 + torch.rand(scaled.out_features, generator=generator)
                scaled.rkr_scale.copy_(s)
                plain.weight.mul_(s[:, None])
                plain.bias.mul_(s)
        got, want = model(images(), tokens), folded(images(), tokens)
    assert torch.allclose(got["image_features"], want["image_features"], atol=1e-5)
    assert torch.allclose(got["text_features"], want["text_features"], atol=1e-5)
    assert not torch.allclose(got["image_features"], reference["image_features"], atol=1e-3)


def test_rkr_trains_only_its_scales_and_reloads(micro):
    model = fresh(micro)
    tokens = micro[1](["this is a photo of cat.", "a dog."])
    ctx = make_ctx(model, micro[1], "wm")
    method = get_method("rkr")
    method.prepare_model(model, "wm")
    before = snapshot(model)
    method.before_step(ctx)
    method.trainable_parameters(ctx)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for n in before if n.endswith("rkr_scale")} and len(trainable) == 6
    assert ctx.info["rkr_scale_parameters"] == 2 * (32 + 128 + 32) and ctx.info["rkr_scale_at"] == "linear"
    train(method, ctx, steps=3)
    for name, value in model.state_dict().items():
        assert (not torch.equal(value, before[name])) == name.endswith("rkr_scale"), name

    reloaded = fresh(micro).eval()
    get_method("rkr").prepare_model(reloaded, "wm")
    reloaded.load_state_dict(model.state_dict())
    model.eval()
    with torch.no_grad():
        assert torch.equal(reloaded(images(), tokens)["image_features"], model(images(), tokens)["image_features"])


def test_rkr_block_output_option(micro):
    """scale_at block (the paper's wording): one factor vector per block output, ones at first."""
    model = fresh(micro).eval()
    tokens = micro[1](["this is a photo of cat."])
    with torch.no_grad():
        reference = model(images(), tokens)
    install_scaling(model, ["image", "text"], "block")
    blocks = list(model.visual.transformer.resblocks) + list(model.transformer.resblocks)
    assert all(len(b._forward_hooks) == 1 for b in blocks)
    with torch.no_grad():
        assert torch.equal(model(images(), tokens)["image_features"], reference["image_features"])
        model.visual.transformer.resblocks[0].rkr_scale.mul_(2.0)
        assert not torch.equal(model(images(), tokens)["image_features"], reference["image_features"])
    method = get_method("rkr", scale_at="block")
    ctx = make_ctx(fresh(micro), micro[1], "wm")
    method.before_step(ctx)
    assert sorted(n for n, p in ctx.model.named_parameters() if n.endswith("rkr_scale")) == \
        ["transformer.resblocks.0.rkr_scale", "visual.transformer.resblocks.0.rkr_scale"]
    with pytest.raises(ValueError, match="unknown scale_at 'layer'"):
        install_scaling(fresh(micro), ["image"], "layer")


def test_rkr_io_scales_only_the_image_tower(micro):
    model = fresh(micro)
    method = get_method("rkr")
    ctx = make_ctx(model, micro[1], "io")
    method.before_step(ctx)
    assert len(method.trainable_parameters(ctx)) == 3
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert names == [f"visual.transformer.resblocks.0.{lin}.rkr_scale" for lin in LINEARS]
    assert not any(n.endswith("rkr_scale") for n, _ in model.transformer.named_parameters())


# --- GeoDL ---------------------------------------------------------------------------------------

def test_gfk_closed_form_matches_the_geodesic_integral():
    """Q (Gong et al.'s closed form) = 2 * integral of Pi(nu) Pi(nu)^T (Eq. 6-7), R built explicitly."""
    torch.manual_seed(0)
    dim, d = 12, 3
    p_old = subspace(torch.randn(20, dim, dtype=torch.float64), d)
    p_new = subspace(torch.randn(20, dim, dtype=torch.float64), d)
    q = geodesic_flow_kernel(p_old, p_new)
    complement = torch.linalg.svd(p_old, full_matrices=True)[0][:, d:]       # R
    u1, gamma, vh = torch.linalg.svd(p_old.T @ p_new)
    theta = torch.arccos(gamma.clamp(0, 1))
    u2 = -(complement.T @ p_new @ vh.T) / torch.sin(theta)                    # R^T P_new = -U2 Sigma V^T
    nus = (torch.arange(4000, dtype=torch.float64) + 0.5) / 4000
    angles = nus[:, None, None] * theta                                       # (nu, 1, d)
    pi = (p_old @ u1) * torch.cos(angles) - (complement @ u2) * torch.sin(angles)   # Pi(nu), Eq. 6
    integral = torch.einsum("nik,njk->ij", pi, pi) / len(nus)                  # midpoint rule, Eq. 7
    assert torch.allclose(q, 2 * integral, atol=1e-6)
    # the geodesic ends on the new subspace
    end = p_old @ u1 @ torch.diag(gamma) - complement @ u2 @ torch.diag(torch.sin(theta))
    assert torch.allclose(end @ end.T, p_new @ p_new.T, atol=1e-8)
    # identical subspaces: theta = 0, Q = 2 P P^T
    assert torch.allclose(geodesic_flow_kernel(p_old, p_old), 2 * p_old @ p_old.T, atol=1e-8)


def test_geodesic_loss_values_and_gradients():
    torch.manual_seed(0)
    z = F.normalize(torch.randn(16, 32), dim=-1)
    assert geodesic_loss(z, z).item() == pytest.approx(-1.0, abs=1e-5)
    z_new = F.normalize(z + 0.3 * torch.randn_like(z), dim=-1).requires_grad_(True)
    z_old = z.clone().requires_grad_(True)
    loss = geodesic_loss(z_new, z_old, subspace_dim=4)
    assert torch.isfinite(loss) and -1.0 < loss.item() < 0.0
    loss.backward()
    assert z_new.grad is not None and z_new.grad.abs().sum() > 0
    assert z_old.grad is None


def test_geodl_identical_models_give_minus_one_per_term(micro):
    model = fresh(micro)
    ctx = mst_ctx(model, micro[1])
    method = get_method("geodl", beta=2.0)
    method.before_step(ctx)
    _, extra = batch_loss(method, ctx, images(), torch.arange(8) % 3)
    assert extra.item() == pytest.approx(2.0 * (-1.0 - 1.0), abs=1e-4)
    assert ctx.info["geodl_fallbacks"] == 0


def test_geodl_falls_back_to_cosine_and_counts_it(micro, monkeypatch, caplog):
    model = fresh(micro)
    ctx = make_ctx(model, micro[1])
    method = get_method("geodl")
    method.before_step(ctx)
    with torch.no_grad():
        model.visual.proj.add_(0.3 * torch.randn_like(model.visual.proj))
        model.text_projection.add_(0.3 * torch.randn_like(model.text_projection))

    def broken_svd(*args, **kwargs):
        raise torch.linalg.LinAlgError("forced failure")

    monkeypatch.setattr(torch.linalg, "svd", broken_svd)
    with caplog.at_level("WARNING"):
        out = model(images(), None)
        names = [CLASSNAMES[c] for c in ctx.session_classes]
        class_features = class_text_features(model, micro[1], names, TEMPLATES, ctx.device)
        extra = method.extra_loss(ctx, ClassBatch(images(), torch.zeros(8, dtype=torch.long)),
                                  {**out, "class_features": class_features})
    assert ctx.info["geodl_fallbacks"] == 2              # the image and the text term
    assert "forced failure" in caplog.text
    with torch.no_grad():
        old_images = method.teacher(images(), None)["image_features"]
    expect = -(F.cosine_similarity(out["image_features"], old_images).mean()
               + F.cosine_similarity(class_features, method.teacher_classes).mean())
    assert torch.isfinite(extra) and extra.item() == pytest.approx(expect.item(), abs=1e-5)
    assert extra.item() > -2.0 + 1e-4                    # the models differ, so not the identical-model value
    extra.backward()                                     # the fallback still trains the model
    assert model.visual.proj.grad is not None


# --- LwF -----------------------------------------------------------------------------------------

def test_lwf_is_zero_for_the_teacher_and_positive_after_a_change(micro):
    model = fresh(micro)
    ctx = mst_ctx(model, micro[1])
    method = get_method("lwf")
    method.before_step(ctx)
    assert ctx.info["lwf_distilled_classes"] == 6        # every seen class, in MST
    _, extra = batch_loss(method, ctx, images(), torch.arange(8) % 3)
    assert abs(extra.item()) < 1e-6
    with torch.no_grad():
        model.visual.proj.add_(0.5 * torch.randn_like(model.visual.proj))
    _, extra = batch_loss(method, ctx, images(), torch.arange(8) % 3)
    assert extra.item() > 1e-4


# --- every method through a session, and the registry ---------------------------------------------

@pytest.mark.parametrize("name", ["ft", "joint_ft", "lwf", "geodl", "imm", "rkr", "vr_lwf"])
def test_every_method_trains_an_mst_session(micro, name):
    model = fresh(micro)
    method = get_method(name, **({"num_pseudo": 8} if name == "vr_lwf" else {}))
    method.prepare_model(model, "wm")      # RKR: its scales, before the snapshot
    ctx = mst_ctx(model, micro[1])
    before = snapshot(model)
    extras = train(method, ctx, steps=2)
    assert len(extras) == (2 if name in ("lwf", "geodl", "vr_lwf") else 0)
    assert model.state_dict().keys() == before.keys()
    assert any(not torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_registry():
    assert available_methods() == sorted(["ft", "joint_ft", "lwf", "geodl", "imm", "rkr", "vr_lwf"])
    assert {n: get_method(n).hyperparameter for n in available_methods()} == {
        "ft": None, "joint_ft": None, "lwf": "beta", "geodl": "beta", "imm": "alpha", "rkr": None,
        "vr_lwf": "beta"}
    assert get_method("joint_ft").trains_on_seen_sessions and not get_method("ft").trains_on_seen_sessions
    with pytest.raises(TypeError, match="'gamma'.*beta"):
        get_method("lwf", gamma=1.0)
    with pytest.raises(TypeError, match="'beta'"):
        get_method("ft", beta=1.0)
    with pytest.raises(KeyError, match="unknown CL-CLIP method 'nope'"):
        get_method("nope")


def test_registry_imports_no_torch():
    code = ("import sys; from ticlip_core.clclip.methods import available_methods; "
            "assert len(available_methods()) == 7; assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_rkr_scaling_factors_take_their_own_learning_rate():
    """RKR's new parameters train at its option ``lr``; without it, at the session's."""
    assert get_method("rkr", lr=0.01).learning_rate(1e-4) == 0.01
    assert get_method("rkr").learning_rate(1e-4) == 1e-4
    assert get_method("ft").learning_rate(1e-4) == 1e-4


def test_teacher_and_extra_encodings_are_counted_as_extra_compute(micro):
    """LwF in MST session 1: the teacher encodes the 6 seen classes' prompts once (forward only),
    then per batch the teacher's image forwards (1x) and the student's 3 previous-class prompts (3x)."""
    ctx = mst_ctx(fresh(micro), micro[1])
    ctx.image_macs_per_sample, ctx.text_macs_per_prompt = 1000, 10
    method = get_method("lwf")
    method.before_step(ctx)
    assert ctx.extra_macs == 6 * len(TEMPLATES) * 10
    batch_loss(method, ctx, images(8), torch.arange(8) % 3)
    assert ctx.extra_macs == 6 * len(TEMPLATES) * 10 + 8 * 1000 + 3 * 3 * len(TEMPLATES) * 10
