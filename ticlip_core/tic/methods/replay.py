"""Shared base of the fixed-size replay methods (Cumulative-Exp, Cumulative-Equal)."""
from __future__ import annotations

from ticlip_core.tic.buffers import ALLOCATIONS
from ticlip_core.engine.method import Method


class ReplayMethod(Method):
    """Warm start from step t-1; all of step t's data plus a replay buffer of ``buffer_size`` old samples.

    Option ``buffer_size`` (D): samples in the buffer; ``None`` means the size of the new
    step's training data, as in TiC-CLIP where every step holds the same amount of data.
    """

    warm_start = True
    plain_first_step = True  # no buffer at step 0
    allocation = ""
    defaults = {"buffer_size": None}

    def buffer_size(self, new_step_size: int | None) -> int:
        """D for this step: the configured size, else the new step's size."""
        size = self.options.get("buffer_size")
        if size is None:
            if new_step_size is None:
                raise ValueError(f"{self.name}: buffer_size is not set and the new step's size is unknown")
            size = new_step_size
        return int(size)

    def data_plan(self, t, steps, new_step_size=None):
        plan: dict[str, int | None] = {}
        if t > 0:
            counts = ALLOCATIONS[self.allocation](t, self.buffer_size(new_step_size))
            plan.update({s: n for s, n in zip(steps[:t], counts) if n > 0})
        plan[steps[t]] = None
        return plan
