"""The study-level interface of a memclip method, on the engine's ``Method``.

The study's task runner (``memclip.study``) asks a method three things beyond the engine's hooks:
whether it trains at all (``trains``), which training samples a task sees (``training_rows``:
the task's own plus the memory, or every task's so far), and its loss on a batch of
image-vs-label-text similarities (``loss``). The default loss is fine-tuning's: cross-entropy
over the label-text logits of every class seen so far.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ticlip_core.engine.method import Method, StepContext


@dataclass(kw_only=True)
class TaskContext(StepContext):
    """A ``StepContext`` for one memclip task: ``t`` is the 0-based task; labels are the
    benchmark's class ids (indices into ``classnames``)."""

    benchmark: str                  # the benchmark's name
    scenario: str                   # class | domain
    classnames: list[str]           # every class of the benchmark
    seen_classes: list[int]         # classes of tasks 0..t, in task order (domain scenario: all)
    num_train_samples: int          # size of the train table (per-sample estimators are indexed by it)
    memory_size: int | None         # M; None for a method that uses no memory
    templates: list[str] = field(default_factory=list)


@dataclass
class TaskBatch:
    """One mini-batch as a method's ``loss`` sees it.

    ``sims`` ``(B, C)``: cosine similarity of each image with the label text of every class of
    the benchmark (columns of classes not yet seen are zero and never read); ``labels`` ``(B,)``
    class ids; ``indices`` ``(B,)`` rows of the train table (stable across tasks: a memory sample
    keeps its index); ``seen`` the columns of the classes seen so far; ``logit_scale`` the
    model's (exp'd) temperature."""

    sims: Any
    labels: Any
    indices: Any
    seen: Any
    logit_scale: Any


class MemclipMethod(Method):
    """A memclip method: fine-tuning on the task's data plus the memory by default."""

    study = "memclip"
    #: False: the starting model is evaluated after every task, never trained (zero-shot)
    trains: bool = True
    #: True: each task trains on the task's data plus the fixed memory (run at every memory size)
    uses_memory: bool = True

    def training_rows(self, t: int, task_of_row, memory_rows) -> list[int]:
        """Train-table rows seen while training task ``t``: the task's own (``task_of_row == t``)
        plus ``memory_rows`` (the memory built after tasks ``0..t-1``); every task's so far when
        ``trains_on_seen_sessions`` (joint training)."""
        import numpy as np

        task_of_row = np.asarray(task_of_row)
        own = np.flatnonzero(task_of_row <= t if self.trains_on_seen_sessions else task_of_row == t)
        extra = [] if self.trains_on_seen_sessions or not self.uses_memory else list(memory_rows)
        return sorted(set(own.tolist()) | set(int(r) for r in extra))

    def loss(self, ctx: TaskContext, batch: TaskBatch):
        """Cross-entropy of the label-text logits ``logit_scale * sims`` over the classes seen so
        far (the paper's fine-tuning baseline)."""
        import torch.nn.functional as F

        logits = batch.logit_scale * batch.sims[:, batch.seen]
        local = {int(c): i for i, c in enumerate(batch.seen.tolist())}
        targets = batch.labels.new_tensor([local[int(y)] for y in batch.labels.tolist()])
        return F.cross_entropy(logits, targets)


class EstimatorLossMethod(MemclipMethod):
    """A method whose loss object keeps moving-average estimators (GCL, GDRO): built for the
    benchmark's sizes at the first task, carried through every later task, and saved with the
    chain (``state_dict``), so a resumed job continues the estimators where they were."""

    def __init__(self, **options):
        super().__init__(**options)
        self._loss = None
        self._pending: dict | None = None

    def make_loss(self, ctx: TaskContext):
        """The loss object for the benchmark of ``ctx`` (its train-table size and class count)."""
        raise NotImplementedError

    def before_step(self, ctx: TaskContext) -> None:
        if self._loss is None:
            self._loss = self.make_loss(ctx)
            if self._pending is not None:  # a resumed chain: restore the saved estimators
                self._loss.load_state_dict(self._pending)
                self._pending = None

    def loss(self, ctx: TaskContext, batch: TaskBatch):
        """The loss object's value on the batch (it updates its estimators first)."""
        return self._loss(batch.sims, batch.labels, batch.indices)

    def state_dict(self) -> dict:
        """The loss object's estimators (CPU tensors)."""
        return self._loss.state_dict() if self._loss is not None else dict(self._pending or {})

    def load_state_dict(self, state: dict) -> None:
        if not state:
            return
        if self._loss is None:
            self._pending = dict(state)  # restored once the task context gives the sizes
        else:
            self._loss.load_state_dict(state)
