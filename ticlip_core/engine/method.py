"""The one interface every continual-learning method implements, in every study.

A method is a class registered by name in its study's registry (``ticlip_core.registry``). The
engine's training loop (``engine.loop``) calls its hooks, named after Avalanche's plugins and
Mammoth's ``begin_task/observe/end_task``:

=========================  ==================================================================
hook                       called
=========================  ==================================================================
``prepare_model``          on a freshly created model, before a checkpoint of this method is
                           loaded into it (methods that add parameters, e.g. RKR)
``data_plan``, ``budget``  when a step's data and budget are planned (TiC: which steps' data
                           and how many samples; a study that trains in epochs ignores them)
``before_step``            once the model is initialised, before the step's first iteration
``trainable_parameters``   what the optimiser updates (default: every parameter that requires
                           gradients)
``learning_rate``          the optimiser's learning rate given the step's
``extra_loss``             on each mini-batch: a term added to the study's own loss, or None
``after_step``             after the last iteration, before the checkpoint is written
``state_dict``             what a resumed step must restore beyond the weights (e.g. a
                           generator's state); ``load_state_dict`` restores it
=========================  ==================================================================

Methods declare the study they belong to (``study``) and the scenarios of that study they
support (``scenarios``; empty: all), so a configured pairing that cannot run fails when the
DAG is built (``registry.check_methods``). Options are declared in ``defaults``; any other
option is refused with a TypeError naming it. This module imports no torch.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class StepContext:
    """What a method's hooks can see and use during one training step (a TiC time step, a
    CL-CLIP session, a memclip task): the model, its settings, and what the method records."""

    method: Any = None
    #: 0-based index of the step in its scenario
    t: int = 0
    #: names of every step of the scenario, in order
    steps: list = field(default_factory=list)
    model: Any = None
    tokenizer: Any = None
    config: dict = field(default_factory=dict)
    device: Any = "cpu"
    #: MACs of one training sample through the model's forward pass
    forward_macs_per_sample: int = 0
    #: weights the step started from (the previous checkpoint), or None for a fresh init
    init_state: dict | None = None
    #: validation shards per step (held out from training; never the test split)
    val_shards: dict = field(default_factory=dict)
    #: what the method chose or measured (written to the compute record as ``method_info``)
    info: dict = field(default_factory=dict)
    #: MACs spent beyond the model's own training passes (a teacher's forwards, a selection search)
    extra_macs: int = 0


class Method:
    """A continual-learning method: its study, options, and hooks (all no-ops here).

    Subclasses set ``name``, ``study`` and, where they need them, ``scenarios``, ``defaults``,
    ``warm_start`` and ``hyperparameter``, and override only the hooks they change.
    """

    name: str = ""
    #: the study whose registry holds this method ("tic", "clclip", ...)
    study: str = ""
    #: scenarios of the study this method supports (e.g. CL-CLIP's "mst"); empty: every one
    scenarios: tuple[str, ...] = ()
    #: the options this method accepts, with their defaults
    defaults: dict[str, Any] = {}
    #: initialise step t from this method's own checkpoint of step t-1 (else a fresh init)
    warm_start: bool = False
    #: the option tuned on validation ("beta", "alpha"), or None
    hyperparameter: str | None = None
    #: train on the data of every step so far (joint training, an upper bound)
    trains_on_seen_sessions: bool = False
    #: step 0 trains exactly as the plain recipe does (fresh init, the first step's data, budget C,
    #: no loss term or hook that changes the weights), so runs of such methods share one first step
    plain_first_step: bool = False

    def __init__(self, **options):
        unknown = sorted(set(options) - set(self.defaults))
        if unknown:
            known = ", ".join(sorted(self.defaults)) or "none"
            from ticlip_core.registry import title

            raise TypeError(f"{title(self.study)} method '{self.name}' got unknown option(s) "
                            f"{', '.join(map(repr, unknown))}; its options: {known}")
        self.options = {**self.defaults, **options}

    def supports(self, scenario: str) -> bool:
        """Whether this method runs in ``scenario`` of its study."""
        return not self.scenarios or scenario in self.scenarios

    # -- planning -------------------------------------------------------------------------------
    def data_plan(self, t: int, steps: list[str], new_step_size: int | None = None) -> dict[str, int | None]:
        """Training data of step ``t``: ``{step name: samples to draw}``; ``None`` means all of it.

        ``new_step_size`` is the number of training samples of step ``t`` (replay methods size
        their buffer from it).
        """
        return {steps[t]: None}

    def budget(self, t: int, base_budget: int) -> int:
        """Samples seen while training step ``t``, given the per-step budget C."""
        return base_budget

    def config_paths(self, t: int) -> tuple[str, ...]:
        """Dotted config keys, beyond the study's training block, ``model``, ``seed`` and this
        method's options, that the hooks read through ``ctx.config`` at step ``t`` (the training
        job is given exactly these)."""
        return ()

    # -- hooks ----------------------------------------------------------------------------------
    def prepare_model(self, model, variant: str | None = None) -> None:
        """Called on a freshly created model before a checkpoint of this method is loaded into it."""

    def before_step(self, ctx: StepContext) -> None:
        """Called once the model is initialised, before the first iteration of a step."""

    def trainable_parameters(self, ctx: StepContext) -> list:
        """The parameters the optimiser updates (default: every one that requires gradients)."""
        return [p for p in ctx.model.parameters() if p.requires_grad]

    def learning_rate(self, lr: float) -> float:
        """The optimiser's learning rate given the step's ``lr`` (default: ``lr`` itself)."""
        return lr

    def extra_loss(self, ctx: StepContext, batch, outputs):
        """A loss term added to the study's own loss on each mini-batch, or ``None``."""
        return None

    def after_step(self, ctx: StepContext) -> None:
        """Called after the last iteration, before the checkpoint is written."""

    def state_dict(self) -> dict:
        """What a resumed step needs beyond the weights and the optimiser (default: nothing)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what ``state_dict`` returned."""

    def describe(self) -> str:
        """One line for logs and docs."""
        return (self.__doc__ or self.name).strip().splitlines()[0]
