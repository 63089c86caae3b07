from ticlip_core.clclip.methods import register
from ticlip_core.engine.method import Method
from ticlip_core.engine.seeds import derived_seed
from ticlip_core.clclip.distill import (count_forwards, beta_of, previous_classes, seen_class_features, teacher_from,
                                        teacher_seen_class_features)

PADDING_ID = 0


def pseudo_sentences(generator, vocab_size: int, ks: int, m: int, sot: int, eot: int, context_length: int):
    """Ks replayed-vocabulary pseudo-sentences (Alg. 1) as a (ks, context_length) LongTensor.

    Each row is [sot] + M token ids drawn uniformly (with replacement) from the vocabulary
    without the padding id 0, ``sot`` and ``eot``, + [eot], then zero padding: grammar is ignored
    entirely. Draws advance ``generator`` (a CPU ``torch.Generator``). Raises a ValueError naming
    the length M and the context length when M + 2 > context_length.
    """
    import torch

    if m < 1 or ks < 1:
        raise ValueError(f"vr_lwf: length (M={m}) and num_pseudo (Ks={ks}) must be >= 1")
    if m + 2 > context_length:
        raise ValueError(f"vr_lwf: length M={m} plus the start and end tokens exceeds the text context length "
                         f"{context_length}; use length <= {context_length - 2}")
    allowed = torch.ones(vocab_size, dtype=torch.bool)
    allowed[[PADDING_ID, sot, eot]] = False
    vocabulary = allowed.nonzero().squeeze(1)
    picks = torch.randint(len(vocabulary), (ks, m), generator=generator)
    tokens = torch.zeros(ks, context_length, dtype=torch.long)
    tokens[:, 0] = sot
    tokens[:, 1:m + 1] = vocabulary[picks]
    tokens[:, m + 1] = eot
    return tokens


def corpus_sentences(generator, corpus: list[str], ks: int, tokenizer):
    """The caption-corpus replay ablation: ``ks`` captions drawn from ``corpus`` (without replacement
    when it has at least ``ks``, else with), tokenised by ``tokenizer``."""
    import torch

    if len(corpus) >= ks:
        picks = torch.randperm(len(corpus), generator=generator)[:ks]
    else:
        picks = torch.randint(len(corpus), (ks,), generator=generator)
    return tokenizer([corpus[i] for i in picks.tolist()])


@register
class VRLwF(Method):
    """VR-LwF: cross-entropy + beta * (KL over pseudo-sentence classes, + in MST over seen classes) (Eq. 15-17).

    As the authors' code does (docs/clclip.md): every batch draws Ks fresh pseudo-sentences of M
    random vocabulary tokens (Alg. 1); they act as pseudo-classes: p_old, p_new (Eq. 15-16) are
    the softmax over them of ``logit_scale * <f, t_s>``, from the old model's image and
    pseudo-sentence text features and logit scale, and from the current model's. The old model is
    ``ctx.previous_state`` (the original CLIP in OST, the previous session's model in MST). In an
    MST session after the first, a second KL, with its own softmax, distils the prompts of the
    current and previous sessions' classes (L_VR + L_Pre, Sec. V; the authors' code distils the
    current classes too), as LwF does. Eq. 17 as printed is -sum_s p_new^s log p_old^s; we use
    the standard LwF direction KL(p_old || p_new), as the authors' code does.

    Options: ``beta`` (1.0, tuned on validation A-Acc), ``length`` M (8: the authors' 10-token
    sequences hold the start and end tokens and 8 random ones), ``num_pseudo`` Ks (100),
    ``distill_seen_classes`` (True: the MST class term), ``train_temperature`` (False: the
    temperature ``logit_scale`` stays the original's, as in every other method of the study;
    True trains it with the variant's towers, as the authors' code does), ``corpus`` (None; a
    list of captions: the caption-corpus replay ablation, pseudo-sentences are Ks random captions
    from it, tokenised normally) and ``seed`` (0): the token draws come from a generator seeded
    from (seed, session), so each session's draws are the same whether sessions run in one
    process or in separate jobs.
    """

    name = "vr_lwf"
    study = "clclip"
    hyperparameter = "beta"
    defaults = {"beta": 1.0, "length": 8, "num_pseudo": 100, "distill_seen_classes": True,
                "train_temperature": False, "corpus": None, "seed": 0}

    def before_step(self, ctx):
        import torch

        self.beta = beta_of(self)
        self.length, self.num_pseudo = int(self.options["length"]), int(self.options["num_pseudo"])
        self.corpus = self.options["corpus"]
        if self.corpus is not None and not self.corpus:
            raise ValueError("vr_lwf: corpus is empty; give captions or leave it null for random tokens")
        self.context_length = getattr(ctx.tokenizer, "context_length", None) or ctx.model.context_length
        self.vocab_size = getattr(ctx.tokenizer, "vocab_size", None) or ctx.model.vocab_size
        if self.corpus is None:   # fail at setup, not at the first batch
            pseudo_sentences(torch.Generator(), self.vocab_size, 1, self.length, ctx.tokenizer.sot_token_id,
                             ctx.tokenizer.eot_token_id, self.context_length)
        self.generator = torch.Generator().manual_seed(derived_seed(int(self.options["seed"]), "vr_lwf", ctx.session))
        self.teacher = teacher_from(ctx.previous_state, ctx)
        # the class term from MST's second session on (the authors' phase > 0): current + previous classes
        distill_classes = self.options["distill_seen_classes"] and bool(previous_classes(ctx))
        self.teacher_classes = teacher_seen_class_features(self.teacher, ctx) if distill_classes else None
        ctx.info["beta"] = self.beta
        ctx.info["vr_lwf_pseudo_classes"] = self.num_pseudo
        ctx.info["vr_lwf_distilled_classes"] = 0 if self.teacher_classes is None else len(self.teacher_classes)
        ctx.info["vr_lwf_train_temperature"] = bool(self.options["train_temperature"])

    def trainable_parameters(self, ctx):
        """The variant's parameters, plus the temperature ``logit_scale`` with ``train_temperature``."""
        params = super().trainable_parameters(ctx)
        if self.options["train_temperature"]:
            scale = ctx.model.logit_scale
            scale.requires_grad_(True)
            params += [] if any(p is scale for p in params) else [scale]
        return params

    def draw(self, ctx):
        """This batch's pseudo-sentences (advancing the generator), on ``ctx.device``."""
        if self.corpus is not None:
            tokens = corpus_sentences(self.generator, self.corpus, self.num_pseudo, ctx.tokenizer)
        else:
            tokens = pseudo_sentences(self.generator, self.vocab_size, self.num_pseudo, self.length,
                                      ctx.tokenizer.sot_token_id, ctx.tokenizer.eot_token_id, self.context_length)
        return tokens.to(ctx.device)

    def extra_loss(self, ctx, batch, out):
        images, class_features = batch.images, out["class_features"]
        import torch

        from ticlip_core.losses import kl_distillation

        tokens = self.draw(ctx)
        with torch.no_grad():
            old = self.teacher(images, None)
            old_text = self.teacher.encode_text(tokens, normalize=True)
            old_logits = old["logit_scale"] * old["image_features"] @ old_text.T
        count_forwards(ctx, images=len(images), prompts=len(tokens))          # the teacher's passes
        new_text = ctx.model.encode_text(tokens, normalize=True)
        count_forwards(ctx, prompts=len(tokens), trained=True)               # the student's pseudo-sentences
        new_logits = out["logit_scale"] * out["image_features"] @ new_text.T
        loss = kl_distillation(new_logits, old_logits)                      # L_VR, Eq. 17
        if self.teacher_classes is not None:                                 # L_Pre: its own softmax
            old_class_logits = old["logit_scale"] * old["image_features"] @ self.teacher_classes.T
            new_class_logits = out["logit_scale"] * out["image_features"] @ seen_class_features(ctx, class_features).T
            loss = loss + kl_distillation(new_class_logits, old_class_logits)
        return self.beta * loss

    def after_step(self, ctx):
        self.teacher = self.teacher_classes = None

    def state_dict(self):
        """The pseudo-sentence generator's state: a resumed session draws the sentences an
        uninterrupted one would (``before_step`` reseeds it, then the loop restores this)."""
        generator = getattr(self, "generator", None)
        return {} if generator is None else {"generator": generator.get_state()}

    def load_state_dict(self, state):
        """Restore the generator's state that ``state_dict`` returned."""
        if "generator" in state:
            self.generator.set_state(state["generator"])
