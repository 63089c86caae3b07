"""Helpers shared by the workflow entry points (``workflow_scripts/``)."""
from __future__ import annotations

import contextlib
import gc
import logging
import traceback
from pathlib import Path


@contextlib.contextmanager
def logged(log_path: str | Path):
    """Send stdout, stderr and ``logging`` to ``log_path`` for the duration of a job.

    An exception is written to the log as well, then re-raised so Snakemake shows it and
    marks the job failed.

    A job is one process that ends right after this block, so the block ends with ``gc.freeze()``:
    interpreter shutdown then skips the final collection over the million-odd objects torch and
    its compiler stack create at import. Exit takes 0.25 s instead of 0.9 s
    (``benchmarks/bench_startup.py``); nothing is skipped, and atexit handlers still run.
    """
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", buffering=1) as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        handler = logging.StreamHandler(f)
        logging.basicConfig(level=logging.INFO, handlers=[handler], force=True,
                            format="%(asctime)s %(levelname)s %(message)s")
        try:
            yield
        except BaseException:
            traceback.print_exc(file=f)
            raise
        finally:
            gc.freeze()
