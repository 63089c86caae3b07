"""The shared first step: one training of step 0, copied to every run that trains it the same way.

Every TiC method whose ``plain_first_step`` is set trains step 0 with the same seed, data,
budget and recipe (common random numbers), so their step-0 checkpoints are bit-identical.
The workflow trains it once (run ``job_config.FIRST_STEP_RUN``) and copies it to each run. The
copy's ``compute.json`` names the run and its method, so tables count its compute as that run's.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path


def copy_first_step(*, model: str, log: str, compute: str, run_name: str, method_name: str,
                    out_model: str, out_log: str, out_compute: str, optimizer: str | None = None,
                    out_optimizer: str | None = None) -> dict:
    """Copy the shared first step's checkpoint and log (and its AdamW state, when steps carry it:
    ``optimizer`` to ``out_optimizer``) to a run's step-0 paths, and write its compute record as
    the run's (``method``: the run, ``base_method``: its method, ``first_step``: "shared").
    Returns the record written."""
    record = json.loads(Path(compute).read_text())
    if record.get("step_index") != 0:
        raise ValueError(f"{compute}: not a first step (step_index {record.get('step_index')!r})")
    pairs = [(model, out_model), (log, out_log)] + ([(optimizer, out_optimizer)] if optimizer else [])
    for src, dst in pairs:
        Path(dst).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    record.update(method=run_name, base_method=method_name, first_step="shared",
                  trained_as=record.get("method"))
    Path(out_compute).write_text(json.dumps(record, indent=2))
    return record
