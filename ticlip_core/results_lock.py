"""One run at a time per ``results:`` folder, whatever the working directory.

Snakemake locks a working directory (``.snakemake/locks``), not the folders a run writes: two runs
started from two directories on one ``results:`` folder would train the same step at once, both
writing the same temporary files. The main Snakemake process therefore holds an exclusive
``flock`` on ``<results>/.ticlip.lock`` for as long as it lives. The kernel drops the lock when
the process ends, however it ends (kill -9 included), so a lock is never left stale.
"""
from __future__ import annotations

import datetime
import fcntl
import json
import os
import socket
from pathlib import Path

LOCK_NAME = ".ticlip.lock"
_held: dict[Path, int] = {}  # lock file -> open descriptor, kept for the process's lifetime


class ResultsInUseError(RuntimeError):
    """Another live run holds the results folder."""


def hold_results_lock(results: str | Path) -> Path:
    """Take the exclusive lock of ``results`` for this process (again: a no-op), or raise
    ``ResultsInUseError`` naming the run that holds it."""
    path = (Path(results) / LOCK_NAME).resolve()
    if path in _held:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 4096, 0).decode("utf-8", "replace")
        os.close(fd)
        try:
            who = json.loads(holder)
            desc = (f"pid {who['pid']} on {who['host']}, started {who['started']} "
                    f"in working directory {who['cwd']}")
        except (ValueError, KeyError):
            desc = "a process that left no details"
        raise ResultsInUseError(
            f"results folder '{results}' is in use by another ticlip run ({desc}). Two runs on one results "
            "folder would train the same steps at once; wait for that run to end, or set another `results:`."
        ) from None
    info = {"pid": os.getpid(), "host": socket.gethostname(), "cwd": os.getcwd(),
            "started": datetime.datetime.now().isoformat(timespec="seconds")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(info).encode(), 0)
    _held[path] = fd
    return path
