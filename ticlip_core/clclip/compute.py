"""Compute accounting of CL-CLIP's training: MACs per image and per prompt, and the records of a
method job (``{CLCLIP}/runs/{method}.compute.json``).

What is counted, per training iteration of a session (``clclip.session.train_session``):

* the image tower on each of the batch's crops: ``image_macs_per_sample`` each;
* the text tower on each prompt encoded for the class classifier (every class of the session
  times every template, encoded again at each iteration since the text tower may train):
  ``text_macs_per_prompt`` each;
* both times ``engine.compute.TRAIN_FORWARD_MULTIPLIER`` (3: forward + backward), as TiC counts
  its training passes, also for a tower the variant keeps frozen (an upper bound there);
* plus what the method adds through ``ctx.extra_macs`` (a teacher's forward passes, counted by
  the method from the same per-image and per-prompt MACs, as TiC's LwF does).

MACs per image and per prompt come from ``engine.compute.forward_macs_per_sample`` on each
tower alone (FLOPs / 2 as PyTorch's flop counter sees them, the same on every device).
Evaluation (validation and test scoring after each session) is not training and not counted.
"""
from __future__ import annotations

#: the fields of one record of ``{method}.compute.json``, in order
RECORD_FIELDS = ("setting", "method", "variant", "samples", "macs", "extra_macs", "seconds", "search_macs")


def chain_totals(sessions: list[dict]) -> dict:
    """Samples, MACs, extra MACs and seconds of a chain's training, summed over its sessions
    (each session's ``train_session`` statistics)."""
    return {"samples": sum(s["samples"] for s in sessions), "macs": sum(s["macs"] for s in sessions),
            "extra_macs": sum(s["extra_macs"] for s in sessions),
            "seconds": round(sum(s["seconds"] for s in sessions), 3)}


def compute_record(setting: str, method: str, variant: str, chosen: list[dict], tried: list[list[dict]]) -> dict:
    """The record of one (setting, variant): the chosen value's chain (``samples``, ``macs``
    including ``extra_macs``, ``seconds``) and ``search_macs``, the MACs of every chain tried
    for the hyperparameter (the chosen one included)."""
    return {"setting": setting, "method": method, "variant": variant, **chain_totals(chosen),
            "search_macs": sum(chain_totals(sessions)["macs"] for sessions in tried)}


def original_record(setting: str) -> dict:
    """The record of the original model (no training): every count 0."""
    return {"setting": setting, "method": "original", "variant": "-", "samples": 0, "macs": 0, "extra_macs": 0,
            "seconds": 0.0, "search_macs": 0}
