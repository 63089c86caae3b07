from ticlip_core.tic.methods import register
from ticlip_core.engine.method import Method

#: which steps' validation splits choose alpha at step t
ALPHA_SELECTIONS = ("seen", "previous")


@register
class Patching(Method):
    """Patching: fine-tune the patched model of t-1 on new data, then interpolate weights (Ilharco et al. 2022).

    theta_t = (1 - alpha) theta_patched(t-1) + alpha theta_finetuned(t), with alpha from the
    option ``alpha_grid`` maximising the mean retrieval Recall@1 (mean of both directions)
    over *validation* splits only. Option ``alpha_selection`` says whose: ``seen`` (default),
    every step seen so far, the new one included (steps[: t + 1]), as Patching itself picks
    alpha on held-out data of both the tasks to keep and the task being patched; ``previous``,
    the previous steps alone (steps[: t]), the narrower reading of TiC-CLIP's "average
    retrieval performance on previous tasks", which cannot see what the new step's training
    is worth and so leans to alpha = 0. Ties go to the larger alpha: when validation cannot
    tell two mixes apart, the new step's training is kept rather than thrown away. The
    search's forward passes are counted as extra compute. Step 0 has no patched model to
    interpolate with and keeps the fine-tuned weights (alpha = 1).
    """

    name = "patching"
    study = "tic"
    plain_first_step = True  # no interpolation at step 0
    defaults = {"alpha_grid": [0.0, 0.25, 0.5, 0.75, 1.0], "alpha_selection": "seen"}
    warm_start = True

    def config_paths(self, t: int) -> tuple[str, ...]:
        """The alpha search (steps after the first) scores validation recall with these settings."""
        return ("eval.batch_size", "eval.retrieval_pool_size", "eval.cache_mb") if t > 0 else ()

    @property
    def alpha_grid(self) -> list[float]:
        grid = [float(a) for a in self.options.get("alpha_grid", [0.0, 0.25, 0.5, 0.75, 1.0])]
        if not grid or any(not 0.0 <= a <= 1.0 for a in grid):
            raise ValueError(f"patching: alpha_grid must be a non-empty list of values in [0, 1], got {grid}")
        return grid

    @property
    def alpha_selection(self) -> str:
        selection = self.options.get("alpha_selection", "seen")
        if selection not in ALPHA_SELECTIONS:
            raise ValueError(f"patching: alpha_selection must be one of {', '.join(ALPHA_SELECTIONS)}, "
                             f"got {selection!r}")
        return selection

    def selection_steps(self, t: int, steps: list[str]) -> list[str]:
        """The steps whose validation splits choose alpha at step ``t`` (``t > 0``)."""
        return list(steps[: t + 1] if self.alpha_selection == "seen" else steps[:t])

    @staticmethod
    def best_alpha(scores: dict[float, float]) -> float:
        """The alpha of the highest score; of tied ones, the largest (most of the new step's training)."""
        return max(scores, key=lambda a: (scores[a], a))

    def after_step(self, ctx):
        from ticlip_core.engine.weights import interpolate_state_dicts
        from ticlip_core.evaluation import DecodedSets

        if ctx.t == 0:
            ctx.info.update(alpha=1.0, alpha_scores={})
            return
        grid, selection = self.alpha_grid, self.alpha_selection
        val = {s: ctx.val_shards.get(s, []) for s in self.selection_steps(ctx.t, ctx.steps)}
        empty = [s for s, shards in val.items() if not shards]
        if empty:
            raise ValueError(f"patching: no validation shards for step(s) {empty} (alpha_selection: {selection}); "
                             "set data.split.val_fraction > 0")
        finetuned = {k: v.detach().clone() for k, v in ctx.model.state_dict().items()}
        scores = {}
        decoded = DecodedSets(ctx.config["eval"]["cache_mb"])  # every alpha reads the same validation sets
        for alpha in grid:
            if alpha not in scores:
                ctx.model.load_state_dict(interpolate_state_dicts(ctx.init_state, finetuned, alpha))
                scores[alpha] = self.validation_score(ctx, val, decoded)
        best = self.best_alpha(scores)
        ctx.model.load_state_dict(interpolate_state_dicts(ctx.init_state, finetuned, best))
        ctx.info.update(alpha=best, alpha_scores={str(a): round(s, 6) for a, s in scores.items()},
                        alpha_selection=selection, selection_steps=list(val))

    def validation_score(self, ctx, val_shards: dict[str, list[str]], decoded=None) -> float:
        """Mean over steps of the mean (i2t, t2i) Recall@1 of ``ctx.model`` on validation shards
        (decoded once for the whole grid when ``decoded``, an ``evaluation.DecodedSets``, is given)."""
        from ticlip_core.tic.evaluate import encode_eval_set, recall_at_k

        ctx.model.eval()
        cfg = ctx.config["eval"]
        per_step = []
        for shards in val_shards.values():
            enc = encode_eval_set(ctx.model, ctx.tokenizer, shards, cfg["batch_size"], ctx.device, decoded=decoded)
            ctx.extra_macs += ctx.forward_macs_per_sample * len(enc.meta)
            per_step.append(recall_at_k(enc.image_features, enc.text_features, [1],
                                        cfg["retrieval_pool_size"])["mean_R@1"])
        ctx.model.train()
        return sum(per_step) / len(per_step)
