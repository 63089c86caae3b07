"""The interface every continual-training method implements."""
from __future__ import annotations


class Method:
    """A continual-training method: initialisation, data selection, budget and hooks.

    Steps are indexed ``t = 0 .. T-1`` in the order the config declares them. Hooks follow
    Avalanche's naming (before/after a step, an extra loss term before backward) and are
    no-ops here; a method overrides only what it changes.
    """

    name: str = ""
    #: initialise step t from this method's own checkpoint of step t-1 (else random init)
    warm_start: bool = False

    def __init__(self, **options):
        self.options = options

    def data_plan(self, t: int, steps: list[str], new_step_size: int | None = None) -> dict[str, int | None]:
        """Training data of step ``t``: ``{step name: samples to draw}``; ``None`` means all of it.

        ``new_step_size`` is the number of training samples of step ``t`` (replay methods size
        their buffer from it).
        """
        return {steps[t]: None}

    def budget(self, t: int, base_budget: int) -> int:
        """Samples seen while training step ``t``, given the per-step budget C."""
        return base_budget

    def before_step(self, ctx) -> None:
        """Called once the model is initialised, before the first iteration of a step."""

    def extra_loss(self, ctx, batch, outputs):
        """A loss term added to the contrastive loss on each mini-batch, or ``None``."""
        return None

    def after_step(self, ctx) -> None:
        """Called after the last iteration, before the checkpoint is written."""

    def config_paths(self, t: int) -> tuple[str, ...]:
        """Dotted config keys, beyond ``train``, ``model``, ``seed`` and this method's options, that
        the hooks read through ``ctx.config`` at step ``t`` (the training job is given exactly these)."""
        return ()

    def describe(self) -> str:
        """One line for logs and docs."""
        return (self.__doc__ or self.name).strip().splitlines()[0]
