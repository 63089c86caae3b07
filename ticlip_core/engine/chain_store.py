"""What a method job that trains many chains has finished, kept so that a killed job resumes
where it stopped (CL-CLIP: every variant x hyperparameter value of a method in each setting, a
chain of sessions each; memclip: every memory size x grid point, a chain of tasks each).

The job's work folder, beside its outputs and not one of them (like TiC's ``resume.pt``), holds:

* one file per chain (``chain_<setting>_<label>_<variant>_<i>.pt``), rewritten atomically
  (``models.atomic_torch_save``) after each finished session (task): the sessions' statistics
  and scores, the method's ``info``, and, until the chain's last session, the model's weights,
  the method's own state (``Method.state_dict``: e.g. GCL's estimators) and the global RNG
  state the next session starts from;
* ``session.resume.pt``: the in-session state of the session in progress, which the engine's
  loop saves every ``resume_every`` iterations.

Every file carries a fingerprint of the job's config, the identity of its inputs (data folder
digest, base checkpoint sha256) and the chain, so a file another configuration or other inputs
left is set aside (``engine.resume``) instead of being resumed. The job removes the folder once
its outputs are written.
"""
from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

from ticlip_core.engine.resume import fingerprint, load_resume_state, save_resume_state


def job_fingerprint(cfg: dict, *, job: str, task_dir: str, base_checkpoint: str | None,
                    extra_files: tuple[str, ...] = ()) -> str:
    """The fingerprint of a chain-training job: its config (``params.cfg``), its name (rule and
    wildcard) and the identity of its inputs: the data folder's digest, the sha256 of the base
    checkpoint (None: a pretrained model, named in the config) and of any ``extra_files``
    (memclip's memory plan)."""
    from ticlip_core.data.layout import file_sha256
    from ticlip_core.engine.resume import folder_digest

    extra = {"extra": [file_sha256(p) for p in extra_files]} if extra_files else {}
    return fingerprint(job=job, cfg=cfg, task=folder_digest(task_dir),
                       base=file_sha256(base_checkpoint) if base_checkpoint else None, **extra)


class ChainStore:
    """The work folder of one chain-training job (see the module docstring)."""

    RESUME_NAME = "session.resume.pt"

    def __init__(self, folder: str | Path, job: str):
        self.folder, self.job = Path(folder), job

    def chain_key(self, *, setting: str, label: str, variant: str, index: int, options: dict) -> tuple[Path, str]:
        """The file and fingerprint of one chain: the job's fingerprint, the setting, the run's
        label, the variant, the hyperparameter value's index and the method options."""
        slug = re.sub(r"[^A-Za-z0-9.=-]+", "_", label)
        path = self.folder / f"chain_{setting}_{slug}_{variant}_{index}.pt"
        return path, fingerprint(job=self.job, setting=setting, label=label, variant=variant, index=index,
                                 options=options)

    @property
    def resume_path(self) -> Path:
        """Where the loop keeps the in-session state of the session in progress."""
        return self.folder / self.RESUME_NAME

    def load(self, path: Path, key: str) -> dict | None:
        """The saved progress of a chain, or None (nothing saved; an unreadable or foreign file
        is set aside with a warning)."""
        return load_resume_state(path, key)

    def save(self, path: Path, key: str, *, sessions: list[dict], info: dict, done: bool, model_state: dict | None,
             torch_rng, method_state: dict | None = None) -> None:
        """Persist a chain after a finished session (atomically), then drop the finished session's
        in-session state. A finished chain (``done``) keeps no weights nor method state."""
        state = {"fingerprint": key, "sessions": sessions, "info": info, "done": done}
        if not done:
            state.update(model=model_state, torch_rng=torch_rng, method_state=method_state or {})
        save_resume_state(path, state)
        self.resume_path.unlink(missing_ok=True)

    def remove(self) -> None:
        """Delete the work folder (the job's outputs are written)."""
        shutil.rmtree(self.folder, ignore_errors=True)


def say_resumed(what: str, sessions: int, path: Path) -> None:
    """Tell the job log that a chain resumes after ``sessions`` finished sessions."""
    print(f"resuming {what} after {sessions} finished session(s) ({path})", file=sys.stderr, flush=True)
