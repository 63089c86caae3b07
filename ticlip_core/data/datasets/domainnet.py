"""DomainNet (Peng et al., 2019) from its official layout and split files.

The root holds ``<domain>/<class>/<file>.jpg`` for the six domains and the split files
``<domain>_train.txt`` / ``<domain>_test.txt``, one image per line::

    clipart/aircraft_carrier/clipart_001_000018.jpg 0
"""
from __future__ import annotations

import os
from pathlib import Path

from ticlip_core.data.datasets.base import (ClassificationSample, ClassificationSet, check_split, lazy_image,
                   missing_files_error, readable_name)

DOMAINS = ("clipart", "infograph", "painting", "quickdraw", "real", "sketch")
SPLITS = ("train", "test")


def load_domainnet(root: str | os.PathLike, split: str = "train", *,
                   domains: list[str] | tuple[str, ...] | None = None) -> ClassificationSet:
    """The images of ``domains`` listed in their ``<domain>_<split>.txt`` files, labelled by class.

    ``domains`` defaults to every domain whose split file exists in ``root``. Keys are the
    relative paths from the split files; sample meta holds ``domain``. Class names come from
    the class folders in the split files (underscores -> spaces), indexed by label; the train
    and test files of the chosen domains are all read for them, so both splits get the same
    class list. Every listed image must exist.
    """
    check_split(split, SPLITS, "domainnet")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"DomainNet root not found: {root}")
    domains = _choose_domains(root, split, domains)

    folder_of: dict[int, str] = {}   # label -> class folder, from all split files read
    label_of: dict[str, int] = {}    # class folder -> label
    entries: list[tuple[str, str, int]] = []  # (domain, relative path, label) of this split
    for domain in domains:
        for file_split in SPLITS:
            path = split_file(root, domain, file_split)
            if not path.is_file():
                continue
            for rel, label in _read_split_file(path, domain):
                folder = rel.split("/")[1]
                if folder_of.setdefault(label, folder) != folder:
                    raise ValueError(f"{path}: label {label} is class folder {folder!r} here but "
                                     f"{folder_of[label]!r} elsewhere in the split files")
                if label_of.setdefault(folder, label) != label:
                    raise ValueError(f"{path}: class folder {folder!r} has label {label} here but "
                                     f"{label_of[folder]} elsewhere in the split files")
                if file_split == split:
                    entries.append((domain, rel, label))

    gaps = sorted(set(range(max(folder_of, default=-1) + 1)) - set(folder_of))
    if gaps:
        raise ValueError(f"{root}: the split files of {list(domains)} never use label(s) "
                         f"{gaps[:10]}, so their class names are unknown")
    classnames = [readable_name(folder_of[i]) for i in range(len(folder_of))]

    samples, seen, duplicates = [], set(), 0
    for domain, rel, label in entries:
        if rel in seen:  # a line repeated in a split file: keep the first (labels already agree)
            duplicates += 1
            continue
        seen.add(rel)
        samples.append(ClassificationSample(key=rel, label=label, load=lazy_image(root / rel),
                                            meta={"domain": domain}))
    _check_images_exist(root, [s.key for s in samples])
    name = f"domainnet_{split}" if set(domains) == set(DOMAINS) else \
        f"domainnet-{'-'.join(domains)}_{split}"
    return ClassificationSet(name=name, classnames=classnames, samples=samples,
                             skipped={"duplicate": duplicates} if duplicates else {},
                             meta={"root": str(root), "split": split, "domains": list(domains)})


def split_file(root: Path, domain: str, split: str) -> Path:
    """Path of the official split file of ``domain``: ``root/<domain>_<split>.txt``."""
    return root / f"{domain}_{split}.txt"


def _choose_domains(root: Path, split: str, domains) -> list[str]:
    if domains is None:
        found = [d for d in DOMAINS if split_file(root, d, split).is_file()]
        if not found:
            raise FileNotFoundError(f"{root}: no DomainNet split files for split {split!r} "
                                    f"(expected e.g. {split_file(root, 'clipart', split).name})")
        return found
    if isinstance(domains, str):
        domains = [domains]
    domains = list(domains)
    unknown = [d for d in domains if d not in DOMAINS]
    if unknown:
        raise ValueError(f"domainnet: unknown domain(s) {unknown}; expected some of {list(DOMAINS)}")
    if len(set(domains)) != len(domains):
        raise ValueError(f"domainnet: domains {domains} repeat a domain")
    for domain in domains:
        path = split_file(root, domain, split)
        if not path.is_file():
            raise FileNotFoundError(f"DomainNet split file for domain {domain!r} not found: {path}")
    return domains


def _read_split_file(path: Path, domain: str) -> list[tuple[str, int]]:
    """(relative path, label) of every non-blank line, checked to lie in ``domain/<class>/``."""
    pairs = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.rsplit(None, 1)
        where = f"{path}, line {lineno}"
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise ValueError(f"{where}: expected '<domain>/<class>/<file> <label>', got {line!r}")
        rel, label = parts[0].strip(), int(parts[1])
        pieces = rel.split("/")
        if len(pieces) != 3 or pieces[0] != domain:
            raise ValueError(f"{where}: path {rel!r} is not of the form '{domain}/<class>/<file>'")
        if label < 0:
            raise ValueError(f"{where}: negative label {label}")
        pairs.append((rel, label))
    return pairs


def _check_images_exist(root: Path, rel_paths: list[str]) -> None:
    """FileNotFoundError unless every path exists; lists each class folder once, not per file."""
    listing: dict[str, set[str]] = {}
    missing = []
    for rel in rel_paths:
        folder, _, filename = rel.rpartition("/")
        if folder not in listing:
            try:
                listing[folder] = set(os.listdir(root / folder))
            except FileNotFoundError:
                listing[folder] = set()
        if filename not in listing[folder]:
            missing.append(str(root / rel))
    if missing:
        raise missing_files_error(missing, f"DomainNet in {root}")
