"""Plain data files written deterministically and atomically: the same arrays give the same
bytes, and a killed job never leaves a file that looks complete (a temporary name, then a
rename). Used by every study's prepared data (CL-CLIP's task, memclip's benchmarks)."""
from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np


def write_npz(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``arrays`` as an (uncompressed) ``.npz`` whose bytes depend only on the arrays.

    ``np.savez`` stamps each member with the current time; here every member gets the zip
    epoch. Written to a temporary name and renamed, so a killed job leaves no partial file.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with zf.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.ascontiguousarray(array), allow_pickle=False)
    os.replace(tmp, path)


def write_json(path: Path, data) -> None:
    """Write ``data`` as indented JSON, through a temporary name (no partial file on a kill)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
