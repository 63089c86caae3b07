"""Deterministic figures: built on ``matplotlib.figure.Figure`` with the Agg canvas (no pyplot,
no display, no global state) and saved as PNG without the version-stamped "Software" metadata,
so the same inputs give the same bytes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 120
_PNG_METADATA = {"Software": None}


def new_figure(width: float, height: float, ncols: int = 1, *, nrows: int = 1,
               sharex: bool = False) -> tuple[Figure, np.ndarray]:
    """A Figure of ``width`` x ``height`` inches with an Agg canvas and a grid of axes: a 1-D
    array of ``ncols`` axes when ``nrows`` is 1, else ``(nrows, ncols)``."""
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=sharex)
    return fig, (np.atleast_1d(axes[0]) if nrows == 1 else axes)


def save(fig: Figure, path) -> Path:
    """Save ``fig`` as a deterministic PNG at ``DPI``; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=DPI, metadata=_PNG_METADATA)
    return path
