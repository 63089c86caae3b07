"""Resumable training state, for every study: what a killed job left, whether it may be reused.

A training job saves its state every few iterations (``engine.loop``) with a *fingerprint*: a
string naming everything the state depends on (the job's settings and the identity of its
inputs). A rerun resumes from a state only if its fingerprint is the rerun's own; a state that
cannot be read, or that another configuration saved, is set aside (renamed) with a warning, so
it neither blocks every rerun nor is silently overwritten.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

from ticlip_core.data.layout import file_sha256, shards_digest


def input_identity(train_shards: dict[str, list[str]], val_shards: dict[str, list[str]],
                   init_checkpoint: str | None, init_optimizer: str | None = None) -> dict:
    """The identity of what a TiC step reads: a digest of each training and validation split it
    is given (the split's shard index, see ``data.layout.shards_digest``), the sha256 of the
    checkpoint it starts from (None for a fresh initialisation) and, when it carries the previous
    step's optimizer state over, that file's sha256 too."""
    identity = {"train": {s: shards_digest(shards) for s, shards in sorted(train_shards.items())},
                "val": {s: shards_digest(shards) for s, shards in sorted(val_shards.items())},
                "init_sha256": file_sha256(init_checkpoint) if init_checkpoint else None}
    if init_optimizer:
        identity["init_optimizer_sha256"] = file_sha256(init_optimizer)
    return identity


def folder_digest(folder: str | Path) -> str:
    """sha256 identifying a folder's contents: the relative name and sha256 of every regular file
    below it, in name order. Hidden files (Snakemake's ``.snakemake_timestamp``) do not count."""
    folder = Path(folder)
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts):
            continue
        h.update(f"{rel.as_posix()}\0{file_sha256(path)}\n".encode())
    return h.hexdigest()


def fingerprint(**parts) -> str:
    """A fingerprint of ``parts`` (JSON-serialisable, non-JSON values by their ``str``): the
    sorted-key JSON text itself, or its sha256 when it is long (a caption corpus in the options)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return text if len(text) <= 4096 else "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def save_resume_state(path: Path, state: dict) -> None:
    """Write a resumable training state atomically (``models.atomic_torch_save``: temporary
    name, then rename; on a full disk an OSError naming the path, and no ``.tmp`` left)."""
    from ticlip_core.models import atomic_torch_save

    atomic_torch_save(state, path)


def load_resume_state(path: Path, fingerprint: str, set_aside: bool = True) -> dict | None:
    """The resumable state at ``path`` if it exists and belongs to this very run and step.

    A state that cannot be loaded (garbage bytes, a truncated file) or that another run saved
    (its fingerprint differs: other settings, other data, other starting weights) is not used:
    the step starts afresh, and with ``set_aside`` (the main process) the file is renamed to
    ``<name>.unreadable`` or ``<name>.foreign`` (replacing an older one), with a warning
    on stderr, so that it neither blocks every rerun nor is silently overwritten; it is kept
    for inspection and can be deleted.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            raise ValueError(f"it holds a {type(state).__name__}, not a training state")
    except Exception as err:  # torch raises several types for garbage or truncated files
        first_line = (str(err).strip().splitlines() or [""])[0][:200]
        set_aside_file(path, "unreadable", f"it cannot be loaded ({type(err).__name__}: {first_line})", set_aside)
        return None
    if state.get("fingerprint") != fingerprint:
        set_aside_file(path, "foreign", "it was saved by another configuration, from other data or from other "
                                        "starting weights", set_aside)
        return None
    return state


def set_aside_file(path: Path, kind: str, why: str, move: bool = True) -> None:
    """Rename an unusable resume state to ``<name>.<kind>`` (when ``move``) and say so on stderr."""
    if not move:
        print(f"warning: ignoring {path}: {why}; starting the step afresh", file=sys.stderr, flush=True)
        return
    target = path.with_name(f"{path.name}.{kind}")
    os.replace(path, target)
    print(f"warning: {path}: {why}; moved it to {target} and starting the step afresh", file=sys.stderr, flush=True)
