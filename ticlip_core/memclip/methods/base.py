"""The study-level interface of a memclip method, on the engine's ``Method``.

The study's task runner (``memclip.study``) asks a method, beyond the engine's hooks: whether it
trains at all (``trains``), which training samples a task sees (``training_rows``: the task's own
plus the memory, or every task's so far), its loss on a batch (``loss``), and how it classifies
at test time (``scorer``). The defaults are fine-tuning's: cross-entropy over the label-text
logits of every class seen so far, and the label-text (zero-shot style) classifier.

Methods that classify with their own heads on the image encoder's features (the baselines DER,
FOSTER, Co2L, CaSSLe) set ``uses_text = False``: the runner then computes no label-text features,
``TaskBatch.sims`` is None and the method computes its own forward from ``TaskBatch.images``.
A method that needs the training data outside the batch loop (EWC's Fisher, iCaRL's herding,
a linear probe after the task) reads it through ``ctx.data`` (``TaskData``). What a method keeps
across tasks beyond the model's weights goes in ``state_dict`` as tensors and plain values (the
chain store reads it back with ``weights_only``), and is rebuilt on the next ``before_step``.
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
    data: TaskData | None = None    # the train split while task t trains (None when evaluating only)
    image_macs: int = 0             # MACs of one image through the image tower (for ctx.extra_macs)


@dataclass
class TaskData:
    """The train split as a method's hooks may read it while task ``t`` trains: pixels, labels,
    the task's rows and the shared plan's memory rows, and the batch settings of the task."""

    images: Any                     # the train split's SplitImages
    labels: Any                     # class id of every train row (np.ndarray)
    task_rows: list[int]            # the train rows of task t
    memory_rows: list[int]          # the rows the shared memory plan holds while task t trains
    batch_size: int
    seed: int                       # the task's seed (derive others from it with engine.seeds)
    device: Any
    pixels: Any                     # the model's PixelSpec
    workers: int = 0

    def batches(self, rows, *, epochs: int = 1, seed: int | None = None, shuffle: bool = True):
        """``(rows, x, labels)`` per batch of ``rows``: ``x`` the normalised images ``(B, 3, S, S)``
        and ``labels`` ``(B,)`` on the device; shuffled per epoch with ``seed`` (default: the
        task's) as ``train.row_batches`` does, else in the given order."""
        import torch

        rows = [int(r) for r in rows]
        if shuffle:
            from ticlip_core.memclip.train import row_batches

            batches = row_batches(rows, epochs=epochs, batch_size=self.batch_size,
                                  seed=self.seed if seed is None else seed)
        else:
            batches = [rows[s:s + self.batch_size] for _ in range(epochs) for s in range(0, len(rows), self.batch_size)]
        labels = torch.as_tensor(self.labels, dtype=torch.long)
        loader = torch.utils.data.DataLoader(self.images, batch_sampler=batches, num_workers=self.workers)
        for batch_rows, uint8 in zip(batches, loader):
            yield (batch_rows, self.pixels.normalise(uint8).to(self.device),
                   labels[torch.tensor(batch_rows, dtype=torch.long)].to(self.device))


@dataclass
class TaskBatch:
    """One mini-batch as a method's ``loss`` sees it.

    ``sims`` ``(B, C)``: cosine similarity of each image with the label text of every class of
    the benchmark (columns of classes not yet seen are zero and never read; None for a method
    with ``uses_text = False``); ``labels`` ``(B,)`` class ids; ``indices`` ``(B,)`` rows of the
    train table (stable across tasks: a memory sample keeps its index); ``seen`` the columns of
    the classes seen so far; ``logit_scale`` the model's (exp'd) temperature; ``images`` the
    normalised pixels ``(B, 3, S, S)``; ``image_features`` the model's normalised image embedding
    (None without text)."""

    sims: Any
    labels: Any
    indices: Any
    seen: Any
    logit_scale: Any
    images: Any = None
    image_features: Any = None


class MemclipMethod(Method):
    """A memclip method: fine-tuning on the task's data plus the memory by default."""

    study = "memclip"
    #: False: the starting model is evaluated after every task, never trained (zero-shot)
    trains: bool = True
    #: True: each task trains on the task's data plus the fixed memory (run at every memory size)
    uses_memory: bool = True
    #: False: no label-text features are computed while training (the method has its own heads)
    uses_text: bool = True

    def scorer(self, ctx: TaskContext):
        """How the model classifies at test time after task ``ctx.t``: None for the label-text
        classifier of the classes seen so far, else a function of normalised images ``(B, 3, S,
        S)`` giving scores ``(B, len(ctx.seen_classes))`` in the order of ``ctx.seen_classes``."""
        return None

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
        return F.cross_entropy(logits, local_targets(batch.labels, batch.seen))


def local_targets(labels, seen):
    """The position of each class id of ``labels`` in ``seen`` (a tensor of class ids), as a
    tensor on ``labels``' device: the targets of scores over the classes seen so far."""
    local = {int(c): i for i, c in enumerate(seen.tolist())}
    return labels.new_tensor([local[int(y)] for y in labels.tolist()])


def head_groups(backbone: list, heads: list, head_lr: float | None) -> list[dict]:
    """Optimiser parameter groups: ``backbone`` at the optimiser's LR, ``heads`` at ``head_lr``
    (None: the optimiser's too). Heads trained from scratch on a pretrained encoder need a larger
    LR than the encoder's fine-tuning LR (the baselines' ``head_lr``)."""
    groups = [{"params": list(backbone)}]
    if heads:
        groups.append({"params": list(heads), **({"lr": head_lr} if head_lr is not None else {})})
    return groups


def frozen_copy(module):
    """A deep copy of ``module`` in eval mode with gradients off (a previous model, an old
    feature extractor)."""
    import copy

    out = copy.deepcopy(module).eval()
    for p in out.parameters():
        p.requires_grad_(False)
    return out


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
