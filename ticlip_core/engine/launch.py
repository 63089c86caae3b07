"""Running one training step in this process, or in several under torchrun.

A step's arguments are written to a JSON job file, so the same call can be made by every
process torchrun starts (``python -m ticlip_core.engine.launch JOB.json``); multi-node runs start the
same module with srun and torchrun's rendezvous (profiles/slurm/README.md).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def run_training(job: dict, processes: int, job_file: str | Path) -> dict | None:
    """``train_step(**job)`` here when ``processes`` is 1; else under ``torchrun --standalone``."""
    from ticlip_core.tic.train import train_step

    if processes == 1:
        return train_step(**job)
    job_file = Path(job_file)
    job_file.write_text(json.dumps(job))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
           "-m", "ticlip_core.engine.launch", str(job_file)]
    print("running:", " ".join(cmd), flush=True)
    done = subprocess.run(cmd, stdout=sys.stdout, stderr=sys.stderr)
    job_file.unlink(missing_ok=True)
    if done.returncode != 0:
        raise RuntimeError(f"torchrun with {processes} processes failed (exit {done.returncode}); see the log above")
    return json.loads(Path(job["out_compute"]).read_text())


def main(job_file: str) -> None:
    """One torchrun process: join the group, train, leave."""
    import torch.distributed as dist

    from ticlip_core.tic.train import train_step

    train_step(**json.loads(Path(job_file).read_text()))
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
