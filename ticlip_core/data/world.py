"""The synthetic world: its concept catalogue and how the catalogue changes with the year.

Every object class belongs to a superclass. The superclass decides the silhouette (an animal
is a wide ellipse, a vehicle a car body on wheels, ...) and the class decides an inner marking
(stripes, dots, checker, a hole, a border, ...), so at 32x32 pixels the class can be read off
the shape plus the marking. Colour is an independent attribute painted on top.

The world is a fixed catalogue (the same for every seed); the dataset seed only decides which
samples are drawn from it. Its time dynamics, all defined on absolute years (the smooth trends
run from ``FIRST_YEAR`` to ``LAST_YEAR`` and are held constant outside that range):

* concepts that emerge: a class with ``emerge_year`` is absent before that year;
* concepts whose look changes under the same name: after ``look_change_year`` a class renders
  with ``new_pattern`` (the "masquerade mask -> surgical mask" effect);
* caption vocabulary drift: classes renamed in ``renamed_year`` (``old_name`` before), and a
  modern (social-media style) template set that replaces the classic one over the years;
* domain mix, clutter and image quality: early data is mostly clip art on white and noisy low
  quality images, late data mostly photo-like images with more distractors and less noise;
* class popularity: smooth per-class log-linear trends, plus a hype bump after emergence;
* typical colours: every class has a colour its objects usually have (lemons yellow, ...), and
  a class whose look changes gets a new one with its new look (``typical_colour``); how often
  a dated object takes it is the dataset's choice (``data.synthetic.typical_colour``), timeless
  data never does.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

FIRST_YEAR = 2014
LAST_YEAR = 2021

SUPERCLASSES = ("animal", "vehicle", "fruit", "furniture", "clothing",
                "electronics", "building", "plant", "tool", "medical")

# The silhouette of each superclass; render.py draws these shapes.
SUPERCLASS_SHAPES = {
    "animal": "ellipse", "vehicle": "car", "fruit": "disc", "furniture": "square",
    "clothing": "shirt", "electronics": "slab", "building": "house", "plant": "tree",
    "tool": "diamond", "medical": "plus",
}

PATTERNS = ("plain", "hstripes", "vstripes", "diagonal", "dots", "checker",
            "hole", "border", "half", "cross")

COLOURS = ("red", "orange", "yellow", "green", "teal", "blue", "purple", "pink", "brown", "black")

COLOUR_RGB = {
    "red": (0.85, 0.10, 0.10), "orange": (0.96, 0.55, 0.05), "yellow": (0.96, 0.86, 0.10),
    "green": (0.15, 0.62, 0.18), "teal": (0.00, 0.55, 0.55), "blue": (0.12, 0.28, 0.90),
    "purple": (0.55, 0.18, 0.75), "pink": (0.96, 0.52, 0.72), "brown": (0.50, 0.30, 0.12),
    "black": (0.10, 0.10, 0.10),
}

DOMAINS = ("photo", "clipart", "sketch", "noisy")

SIZES = ("small", "medium", "large")

POSITIONS = ("center", "left", "right", "top", "bottom",
             "top left", "top right", "bottom left", "bottom right")


@dataclass(frozen=True)
class ConceptClass:
    """One object class of the world.

    ``name`` is the canonical (latest) name, used for zero-shot prompts; captions use
    ``display_name(id, year)``, which is ``old_name`` before ``renamed_year``.
    """

    id: int
    name: str
    superclass: str
    pattern: str
    emerge_year: int | None = None
    look_change_year: int | None = None
    new_pattern: str | None = None
    renamed_year: int | None = None
    old_name: str | None = None
    plural: str | None = None

    @property
    def timeless(self) -> bool:
        """True when the class neither emerges, nor changes look, nor is renamed."""
        return self.emerge_year is None and self.look_change_year is None and self.renamed_year is None


def _c(name, superclass, pattern, *, emerge=None, look=None, new_pattern=None, renamed=None,
       old_name=None, plural=None):
    return dict(name=name, superclass=superclass, pattern=pattern, emerge_year=emerge,
                look_change_year=look, new_pattern=new_pattern, renamed_year=renamed,
                old_name=old_name, plural=plural)


_CLASS_SPECS = [
    # animal: wide ellipse
    _c("dog", "animal", "plain"),
    _c("cat", "animal", "border"),
    _c("zebra", "animal", "vstripes"),
    _c("cow", "animal", "dots"),
    _c("tiger", "animal", "diagonal"),
    _c("rabbit", "animal", "half"),
    _c("axolotl", "animal", "checker", emerge=2020),
    # vehicle: car body on wheels ("motor vehicles" evolve, as in the TiC-CLIP study)
    _c("car", "vehicle", "plain", look=2019, new_pattern="diagonal"),
    _c("bus", "vehicle", "hstripes", plural="buses"),
    _c("truck", "vehicle", "half", look=2020, new_pattern="border"),
    _c("taxi", "vehicle", "checker"),
    _c("tram", "vehicle", "vstripes"),
    _c("e-scooter", "vehicle", "dots", emerge=2018, renamed=2019, old_name="electric scooter"),
    _c("drone", "vehicle", "cross", emerge=2017, renamed=2018, old_name="quadcopter"),
    # fruit: disc
    _c("apple", "fruit", "plain"),
    _c("orange", "fruit", "dots"),
    _c("watermelon", "fruit", "vstripes"),
    _c("peach", "fruit", "half", plural="peaches"),
    _c("lemon", "fruit", "border"),
    _c("avocado", "fruit", "hole", emerge=2017),
    _c("dragon fruit", "fruit", "checker", emerge=2019),
    # furniture: square
    _c("chair", "furniture", "plain"),
    _c("table", "furniture", "border"),
    _c("bed", "furniture", "hstripes"),
    _c("sofa", "furniture", "half"),
    _c("shelf", "furniture", "vstripes", plural="shelves"),
    _c("standing desk", "furniture", "checker", emerge=2018),
    _c("lamp", "furniture", "dots", look=2019, new_pattern="cross"),
    # clothing: T-shirt silhouette
    _c("shirt", "clothing", "plain"),
    _c("dress", "clothing", "half", plural="dresses"),
    _c("jacket", "clothing", "border"),
    _c("scarf", "clothing", "hstripes", plural="scarves"),
    _c("mask", "clothing", "dots", look=2020, new_pattern="vstripes", renamed=2020,
       old_name="masquerade mask"),
    _c("hoodie", "clothing", "diagonal"),
    # electronics: tall slab
    _c("smartphone", "electronics", "dots", look=2017, new_pattern="border", renamed=2017,
       old_name="cellphone"),
    _c("smart tv", "electronics", "hstripes", renamed=2019, old_name="television"),
    _c("laptop", "electronics", "checker", renamed=2018, old_name="notebook computer"),
    _c("camera", "electronics", "plain"),
    _c("radio", "electronics", "vstripes"),
    _c("vr headset", "electronics", "half", emerge=2016),
    _c("smartwatch", "electronics", "diagonal", emerge=2015, plural="smartwatches"),
    # building: house (walls and roof)
    _c("house", "building", "plain"),
    _c("church", "building", "cross", plural="churches"),
    _c("school", "building", "hstripes"),
    _c("barn", "building", "vstripes"),
    _c("castle", "building", "checker"),
    _c("tent", "building", "half"),
    # plant: tree (canopy and trunk)
    _c("pine", "plant", "plain"),
    _c("oak", "plant", "dots"),
    _c("palm tree", "plant", "vstripes"),
    _c("cactus", "plant", "cross", plural="cacti"),
    _c("fern", "plant", "hstripes"),
    _c("bonsai", "plant", "border", plural="bonsai"),
    _c("succulent", "plant", "checker", emerge=2017),
    # tool: diamond
    _c("hammer", "tool", "plain"),
    _c("wrench", "tool", "border", plural="wrenches"),
    _c("screwdriver", "tool", "vstripes"),
    _c("drill", "tool", "dots", look=2018, new_pattern="cross"),
    _c("axe", "tool", "half"),
    _c("saw", "tool", "diagonal"),
    _c("fidget spinner", "tool", "hole", emerge=2017),
    # medical: plus sign
    _c("stethoscope", "medical", "plain"),
    _c("bandage", "medical", "hstripes"),
    _c("syringe", "medical", "vstripes"),
    _c("pill", "medical", "dots"),
    _c("thermometer", "medical", "half"),
    _c("covid test", "medical", "checker", emerge=2020),
    _c("hand sanitizer", "medical", "diagonal", emerge=2020),
    _c("vaccine vial", "medical", "border", emerge=2021),
]

CLASSES: tuple[ConceptClass, ...] = tuple(ConceptClass(id=i, **spec) for i, spec in enumerate(_CLASS_SPECS))
NUM_CLASSES = len(CLASSES)


def _check_catalogue() -> None:
    """Fail at import if two classes could ever look alike (same silhouette and marking)."""
    looks: dict[tuple[str, str], str] = {}
    for c in CLASSES:
        assert c.superclass in SUPERCLASSES, c
        for pattern in {c.pattern, c.new_pattern} - {None}:
            assert pattern in PATTERNS, c
            other = looks.setdefault((c.superclass, pattern), c.name)
            assert other == c.name, f"{c.name} and {other} share a look"
    names = [n for c in CLASSES for n in (c.name, c.old_name) if n]
    assert len(names) == len(set(names)), "class names must be unique"


_check_catalogue()


# ---------------------------------------------------------------------------------------------
# Catalogue queries
# ---------------------------------------------------------------------------------------------

def class_names() -> list[str]:
    """Canonical (prompt-friendly) name of every class, indexed by class id."""
    return [c.name for c in CLASSES]


def display_name(class_id: int, year: int | None) -> str:
    """Name a caption of ``year`` uses for the class (``year=None``: the canonical name)."""
    c = CLASSES[class_id]
    if year is not None and c.renamed_year is not None and year < c.renamed_year:
        return c.old_name
    return c.name


def plural_name(class_id: int, year: int | None) -> str:
    """Plural of ``display_name(class_id, year)``."""
    c = CLASSES[class_id]
    name = display_name(class_id, year)
    if c.plural is not None and name == c.name:
        return c.plural
    return _pluralise(name)


def _pluralise(name: str) -> str:
    if name.endswith(("s", "x", "ch", "sh")):
        return name + "es"
    if name.endswith("y") and name[-2:-1] not in "aeiou":
        return name[:-1] + "ies"
    return name + "s"


def pattern_at(class_id: int, year: int | None) -> str:
    """The marking the class is drawn with in ``year`` (``year=None``: the original look)."""
    c = CLASSES[class_id]
    if year is not None and c.look_change_year is not None and year >= c.look_change_year:
        return c.new_pattern
    return c.pattern


def shape_of(class_id: int) -> str:
    """The silhouette of the class (decided by its superclass)."""
    return SUPERCLASS_SHAPES[CLASSES[class_id].superclass]


def classes_present(year: int | None) -> list[int]:
    """Ids of the classes that exist in ``year`` (``year=None``: the timeless classes)."""
    if year is None:
        return timeless_class_ids()
    return [c.id for c in CLASSES if c.emerge_year is None or c.emerge_year <= year]


def timeless_class_ids() -> list[int]:
    """Ids of the classes that never emerge, change look or get renamed (for static tasks)."""
    return [c.id for c in CLASSES if c.timeless]


def emerging_class_ids() -> list[int]:
    """Ids of the classes with an ``emerge_year``."""
    return [c.id for c in CLASSES if c.emerge_year is not None]


def look_change_class_ids() -> list[int]:
    """Ids of the classes whose look changes in ``look_change_year``."""
    return [c.id for c in CLASSES if c.look_change_year is not None]


def changed_class_ids(year: int, reference_year: int) -> list[int]:
    """Classes present in ``year`` that were absent, or looked different, in ``reference_year``.

    These are the concepts a model trained on ``reference_year`` data has never seen as they
    appear in ``year``.
    """
    return [cid for cid in classes_present(year)
            if cid not in classes_present(reference_year)
            or pattern_at(cid, year) != pattern_at(cid, reference_year)]


def catalogue() -> list[dict]:
    """The class catalogue as plain rows (id, name, superclass, shape, pattern, years, ...)."""
    return [dict(id=c.id, name=c.name, superclass=c.superclass, shape=shape_of(c.id),
                 pattern=c.pattern, emerge_year=c.emerge_year,
                 look_change_year=c.look_change_year, new_pattern=c.new_pattern,
                 renamed_year=c.renamed_year, old_name=c.old_name, timeless=c.timeless)
            for c in CLASSES]


# ---------------------------------------------------------------------------------------------
# Time dynamics: smooth schedules on absolute years
# ---------------------------------------------------------------------------------------------

def progress(year: int) -> float:
    """How far ``year`` is along the world's timeline: 0 at FIRST_YEAR, 1 at LAST_YEAR (clipped)."""
    return min(1.0, max(0.0, (year - FIRST_YEAR) / (LAST_YEAR - FIRST_YEAR)))


def _ramp(year: int | None, early: float, late: float) -> float:
    """Linear schedule from ``early`` to ``late``; the midpoint for timeless (``None``) data."""
    p = 0.5 if year is None else progress(year)
    return early + (late - early) * p


_DOMAIN_MIX_EARLY = {"photo": 0.12, "clipart": 0.48, "sketch": 0.12, "noisy": 0.28}
_DOMAIN_MIX_LATE = {"photo": 0.68, "clipart": 0.08, "sketch": 0.14, "noisy": 0.10}


def domain_mix(year: int | None) -> dict[str, float]:
    """Probability of each rendering domain in ``year`` (uniform for timeless data)."""
    if year is None:
        return {d: 1.0 / len(DOMAINS) for d in DOMAINS}
    return {d: _ramp(year, _DOMAIN_MIX_EARLY[d], _DOMAIN_MIX_LATE[d]) for d in DOMAINS}


def clutter_rate(year: int | None) -> float:
    """Mean number of distractor shapes in a photo-like image of ``year``."""
    return _ramp(year, 0.3, 3.5)


def quality(year: int | None) -> float:
    """Image quality in [0, 1]: scales down the sensor noise and blur every image gets."""
    return _ramp(year, 0.15, 1.0)


def centre_probability(year: int | None) -> float:
    """Probability that a single object sits in the centre (centred catalogue shots early on)."""
    return _ramp(year, 0.75, 0.2)


def second_object_probability(year: int | None) -> float:
    """Probability that a scene shows a second, different object."""
    return _ramp(year, 0.1, 0.4)


def modern_caption_probability(year: int | None) -> float:
    """Probability that a caption uses the modern (social-media style) template set."""
    return _ramp(year, 0.03, 0.9)


def _popularity_parameters() -> tuple[np.ndarray, np.ndarray]:
    # A fixed generator: the trends are part of the world, not of the dataset seed.
    rng = np.random.default_rng(20141231)
    return rng.normal(0.0, 0.3, NUM_CLASSES), rng.normal(0.0, 0.5, NUM_CLASSES)


_POP_LEVEL, _POP_TREND = _popularity_parameters()


def _typical_colour_indices() -> np.ndarray:
    # A fixed generator: typical colours are part of the world, not of the dataset seed.
    # Column 0: the original look's colour; column 1: the new look's, always a different one.
    rng = np.random.default_rng(20150101)
    first = rng.integers(len(COLOURS), size=NUM_CLASSES)
    return np.stack([first, (first + 1 + rng.integers(len(COLOURS) - 1, size=NUM_CLASSES)) % len(COLOURS)], axis=1)


_TYPICAL_COLOUR = _typical_colour_indices()


def typical_colour(class_id: int, year: int | None) -> str:
    """The colour objects of the class usually have in ``year``: one per class, and a different
    one once its look has changed (``look_change_year``; ``year=None``: the original look's)."""
    c = CLASSES[class_id]
    changed = year is not None and c.look_change_year is not None and year >= c.look_change_year
    return COLOURS[int(_TYPICAL_COLOUR[class_id, int(changed)])]
_HYPE = 1.5          # extra popularity of a class right after it emerges
_HYPE_DECAY = 2.0    # years for the hype to fall by a factor e


@lru_cache(maxsize=64)
def class_weights(year: int | None) -> np.ndarray:
    """Sampling probability of every class in ``year`` (sums to 1; 0 for absent classes).

    Log-linear per-class trends, plus a hype bump right after a class emerges. For timeless
    data (``year=None``) the timeless classes are uniform. The array is read-only (cached).
    """
    w = _class_weights(year)
    w.flags.writeable = False
    return w


def _class_weights(year: int | None) -> np.ndarray:
    w = np.zeros(NUM_CLASSES)
    present = classes_present(year)
    if year is None:
        w[present] = 1.0
        return w / w.sum()
    t = 2.0 * progress(year) - 1.0
    for cid in present:
        w[cid] = np.exp(_POP_LEVEL[cid] + _POP_TREND[cid] * t)
        emerge = CLASSES[cid].emerge_year
        if emerge is not None:
            w[cid] *= 1.0 + _HYPE * np.exp(-(year - emerge) / _HYPE_DECAY)
    return w / w.sum()


# ---------------------------------------------------------------------------------------------
# Caption vocabulary
# ---------------------------------------------------------------------------------------------

# {desc} is the object description ("two small red apples"), {medium} the domain word.
CLASSIC_TEMPLATES = (
    "a {medium} of {desc}.",
    "an image of {desc}.",
    "stock {medium} of {desc}.",
    "{desc}, {medium}.",
    "{medium}: {desc}.",
    "a {medium} showing {desc}.",
)

MODERN_TEMPLATES = (
    "look at this: {desc} lol",
    "{desc} in the wild #nofilter",
    "just spotted {desc} #{tag}",
    "pov: you found {desc}",
    "obsessed with {desc} rn #{tag}",
    "my {medium} of {desc} today",
    "{desc} vibes #{tag}",
    "cant stop looking at {desc}",
)

NEUTRAL_TEMPLATE = "a {medium} of {desc}."

CLASSIC_MEDIUM = {
    "photo": ("photo", "photograph", "picture"),
    "clipart": ("clip art", "illustration", "cartoon"),
    "sketch": ("sketch", "drawing", "pencil drawing"),
    "noisy": ("blurry photo", "low quality photo", "grainy picture"),
}

MODERN_MEDIUM = {
    "photo": ("pic", "snap", "photo"),
    "clipart": ("graphic", "sticker", "emoji art"),
    "sketch": ("doodle", "sketch", "line art"),
    "noisy": ("blurry pic", "potato quality pic", "grainy snap"),
}

NUMBER_WORDS = {1: "a", 2: "two", 3: "three"}

POSITION_PHRASES = {
    "center": "in the center", "left": "on the left", "right": "on the right",
    "top": "at the top", "bottom": "at the bottom", "top left": "in the top left corner",
    "top right": "in the top right corner", "bottom left": "in the bottom left corner",
    "bottom right": "in the bottom right corner",
}
