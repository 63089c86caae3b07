"""Image folders: ``root/<split>/<class_dir>/<image>``, as ImageNet and its subsets are stored.

For ImageNet, ``train/n01440764/n01440764_10026.JPEG``; readable class names can come from
ImageNet's ``LOC_synset_mapping.txt`` (``n01440764 tench, Tinca tinca``).
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from ticlip_core.data.datasets.base import ClassificationSample, ClassificationSet, is_image_file, lazy_image


def load_imagefolder(root: str | os.PathLike, split: str = "train", *,
                     classes: list[str] | tuple[str, ...] | None = None,
                     classnames: Mapping[str, str] | str | os.PathLike | None = None,
                     ) -> ClassificationSet:
    """Every image under ``root/<split>/<class_dir>/`` (sub-folders included), labelled by class dir.

    Labels index the class dirs in sorted order, or in the order of ``classes`` when given
    (a subset, e.g. a tiered-ImageNet class list; each must exist). ``classnames`` maps class
    dir -> readable name, as a dict or a ``LOC_synset_mapping.txt``-style file whose first
    comma-separated name is used; it must cover every class. Without it the class name is the
    dir name. Image extensions are matched case-insensitively; other files are ignored.
    Keys are paths relative to the split folder; sample meta holds ``class_dir``.
    """
    root = Path(root)
    split_dir = root / split
    if not root.is_dir():
        raise FileNotFoundError(f"imagefolder root not found: {root}")
    if not split_dir.is_dir():
        available = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        raise ValueError(f"imagefolder: unknown split {split!r}: no folder {split_dir}; "
                         f"splits found: {available}")
    present = sorted(entry.name for entry in os.scandir(split_dir)
                     if entry.is_dir() and not entry.name.startswith("."))
    if classes is None:
        class_dirs = present
        if not class_dirs:
            raise FileNotFoundError(f"imagefolder: no class folders in {split_dir}")
    else:
        class_dirs = [classes] if isinstance(classes, str) else list(classes)
        if len(set(class_dirs)) != len(class_dirs):
            raise ValueError(f"imagefolder: the classes option repeats a class dir: {class_dirs}")
        missing = sorted(set(class_dirs) - set(present), key=class_dirs.index)
        if missing:
            raise FileNotFoundError(f"imagefolder: class folder(s) not found in {split_dir}: "
                                    f"{missing[:10]}{' ...' if len(missing) > 10 else ''}")
    names = _classnames(class_dirs, classnames)

    samples = []
    for label, class_dir in enumerate(class_dirs):
        for rel in _images_under(split_dir, class_dir):
            samples.append(ClassificationSample(key=rel, label=label, load=lazy_image(split_dir / rel),
                                                meta={"class_dir": class_dir}))
    if not samples:
        raise FileNotFoundError(f"imagefolder: no image files in the class folders of {split_dir}")
    return ClassificationSet(name=f"{root.name}_{split}", classnames=names, samples=samples,
                             meta={"root": str(root), "split": split, "class_dirs": class_dirs})


def read_synset_mapping(path: str | os.PathLike) -> dict[str, str]:
    """Class dir -> first listed name, from a ``LOC_synset_mapping.txt``-style file.

    Each line is ``<class_dir> <name>[, <other name>...]``; ``n01440764 tench, Tinca tinca``
    gives ``{"n01440764": "tench"}``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"class name mapping file not found: {path}")
    mapping = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.strip().split(None, 1)
        name = parts[1].split(",")[0].strip() if len(parts) == 2 else ""
        if not name:
            raise ValueError(f"{path}, line {lineno}: expected '<class_dir> <name>[, ...]', got {line!r}")
        if parts[0] in mapping:
            raise ValueError(f"{path}, line {lineno}: class dir {parts[0]!r} listed twice")
        mapping[parts[0]] = name
    return mapping


def _classnames(class_dirs: list[str], classnames) -> list[str]:
    if classnames is None:
        return list(class_dirs)
    source = "classnames mapping"
    if not isinstance(classnames, Mapping):
        source = str(classnames)
        classnames = read_synset_mapping(classnames)
    missing = [c for c in class_dirs if c not in classnames]
    if missing:
        raise ValueError(f"imagefolder: {source} has no name for class dir(s) "
                         f"{missing[:10]}{' ...' if len(missing) > 10 else ''}")
    return [str(classnames[c]) for c in class_dirs]


def _images_under(split_dir: Path, class_dir: str) -> list[str]:
    """Image paths below ``split_dir/class_dir``, relative to ``split_dir`` (posix), sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(split_dir / class_dir, followlinks=True):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        rel_dir = Path(dirpath).relative_to(split_dir).as_posix()
        found.extend(f"{rel_dir}/{f}" for f in sorted(filenames)
                     if is_image_file(f) and not f.startswith("."))
    return sorted(found)
