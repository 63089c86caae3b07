"""The classes of a CL-CLIP task (Ding et al., Sec. III-B): update classes, their MST sessions,
and the held-out zero-shot classes.

An update task is an object-classification set (COCO's 80 classes in the paper); zero-shot
classification uses held-out classes (tiered-ImageNet, prompt "this is a photo of [class].").
OST trains all update classes in one session, MST in class sessions (Table I: eight sessions
of ten COCO classes). ``ClassPlan`` says which classes play which part; ``coco_class_plan`` is
the paper's, ``synthetic_class_plan`` the synthetic world's.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ticlip_core.data import world

SETTINGS = ("ost", "mst")
PROMPT_TEMPLATE = "this is a photo of {}."  # the paper's zero-shot prompt (Sec. III-B b)

# Ding et al., Table I: the 80 COCO classes (names as in instances_*2017.json, i.e. as
# ``coco_objects`` names them) in eight MST sessions of ten, which follow COCO's category order.
COCO_SESSIONS: tuple[tuple[str, ...], ...] = (
    ("person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
     "traffic light"),
    ("fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep",
     "cow"),
    ("elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase",
     "frisbee"),
    ("skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard",
     "surfboard", "tennis racket", "bottle"),
    ("wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange"),
    ("broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
     "bed"),
    ("dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
     "microwave", "oven"),
    ("toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
     "hair drier", "toothbrush"),
)


@dataclass(frozen=True)
class ClassPlan:
    """Which classes the update task, its MST sessions and the zero-shot splits use.

    ``update_classes[i]`` names update label ``i``; ``sessions`` lists the update labels of each
    MST session (disjoint, together covering every label); ``zs_test_classes`` and
    ``zs_val_classes`` are held-out classes, disjoint from the update classes and from each
    other (compared case-insensitively).
    """

    update_classes: list[str]
    sessions: list[list[int]]
    zs_test_classes: list[str]
    zs_val_classes: list[str]

    def __post_init__(self) -> None:
        for field, names in (("update_classes", self.update_classes),
                             ("zs_test_classes", self.zs_test_classes),
                             ("zs_val_classes", self.zs_val_classes)):
            _check_names(field, names)
        _check_sessions(self.sessions, len(self.update_classes))
        groups = {"update": self.update_classes, "zs_test": self.zs_test_classes,
                  "zs_val": self.zs_val_classes}
        keys = list(groups)
        for a in range(len(keys)):
            for b in range(a + 1, len(keys)):
                shared = sorted({norm_name(n) for n in groups[keys[a]]} & {norm_name(n) for n in groups[keys[b]]})
                if shared:
                    raise ValueError(f"class plan: {keys[a]} and {keys[b]} classes must be disjoint; "
                                     f"both hold {shared}")

    def num_sessions(self, setting: str) -> int:
        """1 for OST, ``len(sessions)`` for MST."""
        return 1 if _check_setting(setting) == "ost" else len(self.sessions)

    def session_classes(self, setting: str, s: int) -> list[int]:
        """Update labels trained in session ``s`` (OST: every label, in the one session 0)."""
        self._check_session(setting, s)
        return list(range(len(self.update_classes))) if setting == "ost" else list(self.sessions[s])

    def seen_classes(self, setting: str, s: int) -> list[int]:
        """Update labels trained in sessions ``0..s``, in session order."""
        self._check_session(setting, s)
        return [c for j in range(s + 1) for c in self.session_classes(setting, j)]

    def to_json(self) -> dict:
        """The ``classes.json`` form."""
        return {"update": list(self.update_classes), "sessions": [list(s) for s in self.sessions],
                "zs_test": list(self.zs_test_classes), "zs_val": list(self.zs_val_classes)}

    @classmethod
    def from_json(cls, data: Mapping) -> "ClassPlan":
        """The plan stored by ``to_json``."""
        missing = [k for k in ("update", "sessions", "zs_test", "zs_val") if k not in data]
        if missing:
            raise ValueError(f"class plan: missing key(s) {missing}")
        return cls(update_classes=list(data["update"]),
                   sessions=[[int(c) for c in s] for s in data["sessions"]],
                   zs_test_classes=list(data["zs_test"]), zs_val_classes=list(data["zs_val"]))

    def _check_session(self, setting: str, s: int) -> None:
        n = self.num_sessions(setting)
        if not 0 <= s < n:
            raise IndexError(f"{setting}: session {s} out of range; there are {n}")


def norm_name(name: str) -> str:
    """A class name for comparison: case, underscores and repeated spaces ignored."""
    return " ".join(str(name).replace("_", " ").lower().split())


def _check_names(field: str, names: Sequence[str]) -> None:
    if not names:
        raise ValueError(f"class plan: {field} is empty")
    seen: dict[str, str] = {}
    for name in names:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"class plan: {field} holds a non-string or empty name: {name!r}")
        if norm_name(name) in seen:
            raise ValueError(f"class plan: {field} names {name!r} twice (as {seen[norm_name(name)]!r})")
        seen[norm_name(name)] = name


def _check_sessions(sessions: Sequence[Sequence[int]], n: int) -> None:
    if not sessions or any(len(s) == 0 for s in sessions):
        raise ValueError("class plan: sessions must be a non-empty list of non-empty label lists")
    flat = [c for s in sessions for c in s]
    bad = [c for c in flat if not isinstance(c, (int, np.integer)) or not 0 <= c < n]
    if bad:
        raise ValueError(f"class plan: session label(s) {bad} outside [0, {n})")
    repeated = sorted({c for c in flat if flat.count(c) > 1})
    if repeated:
        raise ValueError(f"class plan: label(s) {repeated} occur in more than one session")
    uncovered = sorted(set(range(n)) - set(flat))
    if uncovered:
        raise ValueError(f"class plan: update label(s) {uncovered} are in no session")


def _check_setting(setting: str) -> str:
    if setting not in SETTINGS:
        raise ValueError(f"unknown CL-CLIP setting {setting!r}; expected one of {SETTINGS}")
    return setting


def coco_class_plan(zs_test_classes: Sequence[str], zs_val_classes: Sequence[str]) -> ClassPlan:
    """The paper's plan: COCO's 80 classes (label order = category id order = Table I order) in
    the eight sessions of ``COCO_SESSIONS``, with the given held-out classes (tiered-ImageNet:
    351 test classes, 160 validation classes)."""
    update = [name for session in COCO_SESSIONS for name in session]
    sessions = [list(range(i * 10, (i + 1) * 10)) for i in range(len(COCO_SESSIONS))]
    return ClassPlan(update, sessions, list(zs_test_classes), list(zs_val_classes))


def synthetic_class_plan(num_update: int = 16, num_sessions: int = 8, num_zs_test: int = 12,
                         num_zs_val: int = 12, seed: int = 0) -> ClassPlan:
    """A seeded plan over the synthetic world's timeless classes (their names never change).

    The timeless classes are shuffled with ``seed``; the first ``num_update`` are the update
    classes (in that order), cut into ``num_sessions`` equal consecutive sessions; the next
    ``num_zs_test`` and ``num_zs_val`` are the held-out zero-shot test and validation classes.
    """
    for name, value in (("num_update", num_update), ("num_sessions", num_sessions),
                        ("num_zs_test", num_zs_test), ("num_zs_val", num_zs_val)):
        if int(value) < 1:
            raise ValueError(f"synthetic_class_plan: {name} must be at least 1, got {value}")
    if num_update % num_sessions:
        raise ValueError(f"synthetic_class_plan: {num_update} update classes cannot be cut into "
                         f"{num_sessions} equal sessions")
    timeless = world.timeless_class_ids()
    needed = num_update + num_zs_test + num_zs_val
    if needed > len(timeless):
        raise ValueError(f"synthetic_class_plan: {num_update} update + {num_zs_test} zero-shot test + "
                         f"{num_zs_val} zero-shot val = {needed} classes, but the synthetic world has "
                         f"only {len(timeless)} timeless classes")
    order = np.random.default_rng(seed).permutation(len(timeless))
    names = [world.class_names()[timeless[i]] for i in order]
    per = num_update // num_sessions
    return ClassPlan(update_classes=names[:num_update],
                     sessions=[list(range(s * per, (s + 1) * per)) for s in range(num_sessions)],
                     zs_test_classes=names[num_update:num_update + num_zs_test],
                     zs_val_classes=names[num_update + num_zs_test:needed])
