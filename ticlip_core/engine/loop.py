"""The one training loop of every study, with hooks (Avalanche's plugins, Mammoth's
``begin_task/observe/end_task``).

A study prepares its model, optimiser, method context and a deterministic stream of batches,
then calls ``train_loop``, which owns what every study does per iteration:

* skipping, on resume, the batches a killed job already trained (the stream is replayed, so
  the data position is restored, and the global RNG state is set back where it was);
* the learning rate of the iteration (an optional ``schedule(i)``);
* the forward pass under the configured precision (``engine.speed.autocast``): the study's
  ``compute_loss(batch)`` plus the method's ``extra_loss`` hook;
* the non-finite-loss check (``NonFiniteLossError`` naming the step or session and the
  iteration; nothing is written);
* backward, the optimiser step, and an ``after_update`` hook (TiC clamps the logit scale);
* counting samples, skipped samples, forward MACs and the loss;
* progress lines every ``log_every`` iterations (and at the last), printed to stderr with
  flush so that a job's log shows them while it runs, and kept as the rows of a CSV log;
* a resumable state every ``resume_every`` iterations (``engine.resume``), holding the model,
  optimiser, RNG, counters, the method context's ``info``/``extra_macs`` and the method's own
  ``state_dict``.

The study's other hooks (``before_step``, ``trainable_parameters``, ``learning_rate``,
``after_step``) are called by the study around the loop, since what comes between them (which
parameters the optimiser holds, the checkpoint) is the study's. The model's fast paths
(``engine.speed.prepare_model``, ``prepare_images``) take the same settings block as the loop.
"""
from __future__ import annotations

import csv
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from ticlip_core.engine.compute import TRAIN_FORWARD_MULTIPLIER
from ticlip_core.engine.resume import load_resume_state, save_resume_state
from ticlip_core.engine.speed import autocast

#: the columns of a training log (``write_log``)
LOG_COLUMNS = ["iteration", "samples_seen", "loss", "lr", "samples_per_s", "skipped_corrupt"]


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; nothing of the step (or session) is written."""


@dataclass
class BatchLoss:
    """What a study computes on one mini-batch (inside the loop's autocast region)."""

    #: the study's own loss (the method's ``extra_loss`` is added by the loop)
    loss: torch.Tensor
    #: the model outputs ``method.extra_loss`` sees
    outputs: dict
    #: the batch ``method.extra_loss`` sees
    batch: Any
    #: good training samples in the batch, over every data-parallel rank
    samples: int
    #: MACs of the model's forward passes on the batch, over every rank (x the training
    #: multiplier in the compute record)
    forward_macs: int = 0
    #: samples the data stream dropped while assembling the batch (this rank's), and by reason
    skipped: int = 0
    skipped_by_reason: dict = field(default_factory=dict)


@dataclass
class LoopResult:
    """What a finished loop trained and counted (a resumed loop includes what it resumed)."""

    iterations: int = 0
    samples: int = 0
    skipped: int = 0
    skipped_by_reason: dict = field(default_factory=dict)
    forward_macs: int = 0
    #: the rows of the training log (``LOG_COLUMNS``)
    rows: list = field(default_factory=list)
    #: the last iteration's loss (NaN when nothing was trained)
    loss: float = float("nan")
    #: seconds this process spent in the loop (a resumed job: since it resumed)
    seconds: float = 0.0
    #: the iteration a resumed loop started from (0: from the start)
    resumed_from: int = 0

    def macs(self, extra_macs: int) -> int:
        """Training MACs: the forward MACs x ``TRAIN_FORWARD_MULTIPLIER`` (forward + backward) plus
        the method's ``extra_macs`` (a teacher's forwards, a search)."""
        return TRAIN_FORWARD_MULTIPLIER * self.forward_macs + extra_macs


def use_threads(settings: dict) -> None:
    """Set the number of CPU threads torch uses to the settings' ``threads``."""
    torch.set_num_threads(settings["threads"])


def train_loop(*, batches: Iterable, compute_loss: Callable[[Any], BatchLoss], method, ctx, model, optimizer,
               settings: dict, device, total_iterations: int, name: str, where: str, failure_note: str = "",
               schedule: Callable[[int], float] | None = None, after_update: Callable[[], None] | None = None,
               resume_path: str | Path | None = None, fingerprint: str = "", is_main: bool = True,
               save_state: Callable[[Path, dict], None] | None = None) -> LoopResult:
    """Train ``model`` on ``batches`` (a deterministic stream of ``total_iterations`` batches).

    Per batch: ``lr = schedule(i)`` (else the optimiser's own), then, under
    ``autocast(settings, device)``, ``compute_loss(batch)`` and ``method.extra_loss(ctx, ...)``
    summed; a non-finite sum raises ``NonFiniteLossError`` "non-finite loss (...) at {where},
    iteration {i}; {failure_note}"; then zero_grad, backward, ``optimizer.step()`` and
    ``after_update()``. ``settings`` holds ``precision``, ``log_every`` and ``resume_every``.

    With ``resume_path``, a state saved there under ``fingerprint`` (``engine.resume``) is
    resumed: its batches are skipped, the model, optimiser, counters, ``ctx.info``,
    ``ctx.extra_macs`` and the method's ``state_dict`` restored, and "resuming {name} ..."
    printed; every ``resume_every`` iterations but the last a new state is saved there by the
    main process (``save_state``, default ``engine.resume.save_resume_state``). The caller
    removes the state once its outputs are written.
    """
    every = settings.get("resume_every", 0) or 0
    log_every = settings["log_every"]
    save_state = save_state or save_resume_state
    resume_path = Path(resume_path) if resume_path is not None else None
    result, done, state = LoopResult(), 0, None
    if resume_path is not None:
        state = load_resume_state(resume_path, fingerprint, set_aside=is_main)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        done = state["iteration"]
        result.rows, result.samples, result.skipped = state["rows"], state["seen"], state["skipped"]
        result.skipped_by_reason.update(state["skipped_by_reason"])
        result.forward_macs, result.loss = state.get("forward_macs", 0), state.get("loss", float("nan"))
        ctx.extra_macs = state["extra_macs"]
        ctx.info.clear()  # in place: a study may hold the same dict across steps (CL-CLIP's chain)
        ctx.info.update(state["info"])
        method.load_state_dict(state.get("method", {}))
        result.resumed_from = done
        print(f"resuming {name} from iteration {done} ({resume_path})", file=sys.stderr, flush=True)
    start = time.perf_counter()
    window_start, window_seen = start, 0
    last = None
    for i, batch in enumerate(batches):
        if i < done:  # the data stream is deterministic: replaying it restores the data position
            if i == done - 1:
                torch.set_rng_state(state["torch_rng"])
                if "cuda_rng" in state and torch.cuda.is_available():
                    torch.cuda.set_rng_state_all(state["cuda_rng"])
            continue
        lr = schedule(i) if schedule is not None else optimizer.param_groups[0]["lr"]
        with autocast(settings, device):
            step = compute_loss(batch)
            loss = step.loss
            extra = method.extra_loss(ctx, step.batch, step.outputs)
            if extra is not None:
                loss = loss + extra
        if not torch.isfinite(loss):
            raise NonFiniteLossError(f"non-finite loss ({loss.item()}) at {where}, iteration {i}; {failure_note}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if after_update is not None:
            after_update()
        last = loss
        result.iterations = i + 1
        result.samples += step.samples
        result.forward_macs += step.forward_macs
        result.skipped += step.skipped
        for reason, n in step.skipped_by_reason.items():
            result.skipped_by_reason[reason] = result.skipped_by_reason.get(reason, 0) + n
        window_seen += step.samples
        final = i + 1 == total_iterations
        if (i + 1) % log_every == 0 or final:
            now = time.perf_counter()
            row = {"iteration": i + 1, "samples_seen": result.samples, "loss": round(loss.item(), 6), "lr": lr,
                   "samples_per_s": round(window_seen / max(now - window_start, 1e-9), 2),
                   "skipped_corrupt": result.skipped}
            result.rows.append(row)
            window_start, window_seen = now, 0
            if is_main:
                print(f"{name}: iteration {i + 1}/{total_iterations}, {result.samples} samples, "
                      f"loss {row['loss']:.4f}, lr {lr:.3g}, {row['samples_per_s']:.1f} samples/s",
                      file=sys.stderr, flush=True)
        if every and (i + 1) % every == 0 and not final and is_main and resume_path is not None:
            result.loss = loss.item()
            save_state(resume_path, {
                "fingerprint": fingerprint, "iteration": i + 1, "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "torch_rng": torch.get_rng_state(),
                **({"cuda_rng": torch.cuda.get_rng_state_all()} if torch.cuda.is_available() else {}),
                "rows": result.rows, "seen": result.samples, "skipped": result.skipped,
                "skipped_by_reason": dict(result.skipped_by_reason), "forward_macs": result.forward_macs,
                "loss": result.loss, "extra_macs": ctx.extra_macs, "info": ctx.info, "method": method.state_dict()})
    if last is not None:
        result.loss = last.item()
    result.seconds = time.perf_counter() - start
    return result


def write_log(rows: list[dict], path: str | Path) -> None:
    """Write the rows of a training log (``LOG_COLUMNS``) as CSV."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=LOG_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
