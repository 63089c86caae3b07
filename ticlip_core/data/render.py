"""Procedural rendering of scenes: silhouettes, markings, domains, clutter and degradation.

Everything is numpy on float RGB arrays in [0, 1] of shape (size, size, 3); coordinates are
normalised to [0, 1] so one scene renders at any resolution. An object is drawn in its own
local frame, where its bounding square spans [-1, 1] on both axes.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageFilter

# ---------------------------------------------------------------------------------------------
# Silhouettes (one per superclass) and markings (one per class), on local coordinates x, y
# ---------------------------------------------------------------------------------------------


def _ellipse(x, y):
    return x * x + (y / 0.6) ** 2 <= 1.0


def _car(x, y):
    body = (np.abs(x) <= 1.0) & (y >= -0.3) & (y <= 0.45)
    cabin = (np.abs(x) <= 0.55) & (y >= -0.85) & (y < -0.3)
    wheels = ((np.abs(x) - 0.55) ** 2 + (y - 0.6) ** 2) <= 0.3 ** 2
    return body | cabin | wheels


def _disc(x, y):
    return x * x + y * y <= 1.0


def _square(x, y):
    return (np.abs(x) <= 0.85) & (np.abs(y) <= 0.85)


def _shirt(x, y):
    sleeves = (np.abs(x) <= 1.0) & (y >= -0.9) & (y <= -0.3)
    torso = (np.abs(x) <= 0.55) & (y >= -0.9) & (y <= 0.95)
    return sleeves | torso


def _slab(x, y):
    return (np.abs(x) <= 0.55) & (np.abs(y) <= 0.95)


def _house(x, y):
    walls = (np.abs(x) <= 0.75) & (y >= -0.05) & (y <= 0.9)
    roof = (y >= -0.95) & (y < -0.05) & (np.abs(x) <= (y + 0.95) * (0.95 / 0.9))
    return walls | roof


def _tree(x, y):
    canopy = (y >= -1.0) & (y <= 0.55) & (np.abs(x) <= (y + 1.0) * (0.9 / 1.55))
    trunk = (np.abs(x) <= 0.2) & (y > 0.55) & (y <= 1.0)
    return canopy | trunk


def _diamond(x, y):
    return np.abs(x) + np.abs(y) <= 1.0


def _plus(x, y):
    return ((np.abs(x) <= 0.4) & (np.abs(y) <= 1.0)) | ((np.abs(y) <= 0.4) & (np.abs(x) <= 1.0))


SHAPES = {"ellipse": _ellipse, "car": _car, "disc": _disc, "square": _square, "shirt": _shirt,
          "slab": _slab, "house": _house, "tree": _tree, "diamond": _diamond, "plus": _plus}

_STRIPE = 0.36   # stripe width in local units: about 3 pixels for a medium object at 32x32
_DOT_PERIOD, _DOT_RADIUS = 0.8, 0.22
_HOLE_RADIUS = 0.42


def _marking(pattern: str, shape, x, y):
    """Where the class's marking lies (a boolean mask; the caller intersects it with the body)."""
    if pattern == "plain" or pattern == "hole":
        return np.zeros(x.shape, dtype=bool)
    if pattern == "hstripes":
        return np.floor((y + 1.0) / _STRIPE) % 2 == 1
    if pattern == "vstripes":
        return np.floor((x + 1.0) / _STRIPE) % 2 == 1
    if pattern == "diagonal":
        return np.floor((x + y + 2.0) / (_STRIPE * 1.3)) % 2 == 1
    if pattern == "dots":
        dx = np.mod(x + 1.0, _DOT_PERIOD) - _DOT_PERIOD / 2
        dy = np.mod(y + 1.0, _DOT_PERIOD) - _DOT_PERIOD / 2
        return dx * dx + dy * dy <= _DOT_RADIUS ** 2
    if pattern == "checker":
        return (np.floor((x + 1.0) / 0.5) + np.floor((y + 1.0) / 0.5)) % 2 == 1
    if pattern == "border":
        return ~shape(x / 0.6, y / 0.6)
    if pattern == "half":
        return y > 0.05
    if pattern == "cross":
        return (np.abs(x) <= 0.2) | (np.abs(y) <= 0.2)
    raise ValueError(f"unknown pattern {pattern!r}")


@dataclass(frozen=True)
class SceneObject:
    """One object to draw: silhouette, marking, colour and placement (normalised units)."""

    shape: str
    pattern: str
    rgb: tuple[float, float, float]
    cx: float
    cy: float
    half: float  # half the side of the object's bounding square


def object_masks(obj: SceneObject, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(silhouette, body, marking) masks of ``obj`` on a size x size grid.

    The silhouette is the full outline (it defines the box); the body is the silhouette minus
    any hole; the marking is the part of the body drawn in the contrasting shade.
    """
    u = _pixel_centres(size)
    x = (u[None, :] - obj.cx) / obj.half
    y = (u[:, None] - obj.cy) / obj.half
    shape = SHAPES[obj.shape]
    silhouette = shape(x, y)
    body = silhouette
    if obj.pattern == "hole":
        body = silhouette & (x * x + y * y > _HOLE_RADIUS ** 2)
    marking = body & _marking(obj.pattern, shape, x, y)
    return silhouette, body, marking


def mask_box(mask: np.ndarray) -> list[float]:
    """Normalised [x0, y0, x1, y1] of the pixels set in ``mask`` ([0, 0, 0, 0] if empty)."""
    size = mask.shape[0]
    cols = np.flatnonzero(mask.any(axis=0))
    rows = np.flatnonzero(mask.any(axis=1))
    if cols.size == 0:
        return [0.0, 0.0, 0.0, 0.0]
    return [float(cols[0] / size), float(rows[0] / size),
            float((cols[-1] + 1) / size), float((rows[-1] + 1) / size)]


def marking_colour(rgb) -> np.ndarray:
    """A shade of ``rgb`` with strong luminance contrast, so markings read in every colour."""
    rgb = np.asarray(rgb, dtype=float)
    luminance = rgb @ np.array([0.299, 0.587, 0.114])
    return rgb * 0.3 if luminance > 0.5 else rgb * 0.35 + 0.65


@lru_cache(maxsize=16)
def _pixel_centres(size: int) -> np.ndarray:
    return (np.arange(size) + 0.5) / size


# ---------------------------------------------------------------------------------------------
# Scene rendering per domain
# ---------------------------------------------------------------------------------------------

PAPER_RGB = np.array([0.97, 0.96, 0.92])


def render_scene(objects: list[SceneObject], *, domain: str, size: int, rng: np.random.Generator,
                 clutter: float, quality: float) -> tuple[np.ndarray, list[list[float]]]:
    """Draw ``objects`` (later ones on top) in ``domain``; returns (uint8 image, boxes).

    ``clutter`` is the mean number of distractor shapes for a photo (clip art gets none,
    sketches and noisy images fewer); ``quality`` in [0, 1] scales the sensor noise and blur
    every image gets, on top of the heavy degradation of the ``noisy`` domain.
    """
    base = domain
    if domain == "noisy":  # a degraded photo or a degraded clip art
        base = "photo" if rng.random() < 0.5 else "clipart"
    masks = [object_masks(obj, size) for obj in objects]
    boxes = [mask_box(silhouette) for silhouette, _, _ in masks]
    if base == "sketch":
        img = _sketch(objects, masks, size, rng, clutter)
    elif base == "clipart":
        img = _clipart(objects, masks, size)
    else:
        img = _photo(objects, masks, size, rng, clutter * (0.6 if domain == "noisy" else 1.0))
    img = _degrade(img, rng, quality, heavy=(domain == "noisy"))
    return np.round(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8), boxes


def _clipart(objects, masks, size):
    img = np.ones((size, size, 3))
    for obj, (_, body, marking) in zip(objects, masks):
        rgb = np.asarray(obj.rgb)
        img[body] = rgb
        img[marking] = marking_colour(rgb)
        img[_inner_edge(body)] = rgb * 0.35  # the dark outline of cartoon drawings
    return img


def _photo(objects, masks, size, rng, clutter):
    img = _textured_background(size, rng)
    _draw_distractors(img, rng, rng.poisson(clutter), lines_only=False)
    u = _pixel_centres(size)
    shift = max(1, size // 24)
    for obj, (_, body, marking) in zip(objects, masks):
        shadow = np.zeros_like(body)
        shadow[shift:, shift:] = body[:-shift, :-shift]
        img[shadow & ~body] *= 0.55
        # Light from the top left: brighter there, darker towards the bottom right.
        lx = (u[None, :] - obj.cx) / obj.half
        ly = (u[:, None] - obj.cy) / obj.half
        shade = (1.0 - 0.12 * (lx + ly))[..., None]
        colour = np.where(marking[..., None], marking_colour(obj.rgb), np.asarray(obj.rgb))
        jitter = rng.normal(0.0, 0.05, 3)  # lighting/white-balance variation per object
        texture = rng.normal(0.0, 0.03, (size, size, 1))
        lit = colour * shade + jitter + texture
        img[body] = lit[body]
    return img


def _sketch(objects, masks, size, rng, clutter):
    img = np.broadcast_to(PAPER_RGB, (size, size, 3)).copy()
    img += rng.normal(0.0, 0.01, (size, size, 1))
    _draw_distractors(img, rng, rng.poisson(clutter * 0.5), lines_only=True)
    # Region map: 0 paper, 2k+1 body of object k, 2k+2 its marking. Lines run along region edges.
    regions = np.zeros((size, size), dtype=np.int32)
    for k, (_, body, marking) in enumerate(masks):
        regions[body] = 2 * k + 1
        regions[marking] = 2 * k + 2
    right = np.pad(regions, ((0, 0), (0, 1)), mode="edge")[:, 1:]
    down = np.pad(regions, ((0, 1), (0, 0)), mode="edge")[1:, :]
    edge = (regions != right) | (regions != down)
    owner = np.maximum(regions, np.maximum(right, down))
    for _ in range(max(1, size // 32) - 1):  # keep lines about 1/32 of the image thick
        edge, owner = _dilate(edge), _max_filter(owner)
    pencil = np.array([np.asarray(obj.rgb) * 0.8 for obj in objects]).reshape(-1, 3)
    k = (owner[edge] - 1) // 2
    img[edge] = pencil[k]
    return img


def _textured_background(size, rng):
    """A muted two-tone gradient with blotchy low-frequency noise and fine grain."""
    grey = rng.uniform(0.3, 0.7, 2)[:, None]
    top, bottom = 0.6 * grey + 0.4 * rng.uniform(0.2, 0.8, (2, 3))  # muted, desaturated tones
    v = _pixel_centres(size)[:, None, None]
    img = top * (1.0 - v) + bottom * v
    blotches = rng.normal(0.0, 0.1, (4, 4, 1)) + rng.normal(0.0, 0.03, (4, 4, 3))
    img = img + _upsample(blotches, size)
    img += rng.normal(0.0, 0.03, (size, size, 1))
    return img


def _draw_distractors(img, rng, count, *, lines_only):
    """Small blobs, bars and strokes (far smaller than any object) drawn in place."""
    size = img.shape[0]
    u = _pixel_centres(size)
    gx, gy = u[None, :], u[:, None]
    for _ in range(min(int(count), 10)):
        kind = 2 if lines_only else rng.integers(3)
        cx, cy = rng.uniform(0.05, 0.95, 2)
        rgb = rng.uniform(0.2, 0.6, 3) if lines_only else rng.uniform(0.0, 1.0, 3)
        if kind == 0:
            r = rng.uniform(0.03, 0.07)
            mask = (gx - cx) ** 2 + (gy - cy) ** 2 <= r * r
        elif kind == 1:
            a, b = rng.uniform(0.02, 0.07, 2)
            mask = (np.abs(gx - cx) <= a) & (np.abs(gy - cy) <= b)
        else:
            angle, length = rng.uniform(0.0, np.pi), rng.uniform(0.15, 0.35)
            mask = _segment_mask(gx, gy, cx, cy, angle, length, 0.6 / 32)
        img[mask] = rgb


def _segment_mask(gx, gy, cx, cy, angle, length, half_width):
    dx, dy = np.cos(angle), np.sin(angle)
    t = np.clip((gx - cx) * dx + (gy - cy) * dy, -length / 2, length / 2)
    return (gx - cx - t * dx) ** 2 + (gy - cy - t * dy) ** 2 <= half_width ** 2


def _degrade(img, rng, quality, *, heavy):
    """Sensor noise and blur shrinking with ``quality``; heavy: low contrast, blur and noise."""
    size = img.shape[0]
    blur = 0.6 if rng.random() < 0.5 * (1.0 - quality) else 0.0
    sigma = 0.04 * (1.0 - quality)
    if heavy:
        contrast = rng.uniform(0.45, 0.7)
        img = img.mean() + contrast * (img - img.mean())
        blur = rng.uniform(0.5, 0.9)
        sigma += rng.uniform(0.03, 0.06)
    if blur > 0:
        img = _blur(img, blur * size / 32)
    if sigma > 0:
        img = img + rng.normal(0.0, sigma, img.shape)
    return img


def _blur(img, radius):
    pil = Image.fromarray(np.round(np.clip(img, 0, 1) * 255).astype(np.uint8))
    return np.asarray(pil.filter(ImageFilter.GaussianBlur(radius)), dtype=float) / 255.0


@lru_cache(maxsize=16)
def _bilinear_weights(size: int, coarse: int) -> np.ndarray:
    """(size, coarse) matrix mapping a coarse grid to ``size`` pixels by linear interpolation."""
    pos = np.clip(_pixel_centres(size) * coarse - 0.5, 0, coarse - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, coarse - 1)
    w = np.zeros((size, coarse))
    w[np.arange(size), lo] += 1.0 - (pos - lo)
    w[np.arange(size), hi] += pos - lo
    return w


def _upsample(coarse, size):
    """Bilinear upsampling of a (k, k, c) grid to (size, size, c)."""
    w = _bilinear_weights(size, coarse.shape[0])
    return (w @ coarse.transpose(2, 0, 1) @ w.T).transpose(1, 2, 0)


def _inner_edge(mask):
    """Pixels of ``mask`` with a 4-neighbour outside it."""
    padded = np.pad(mask, 1, mode="constant")
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~interior


def _dilate(mask):
    out = mask.copy()
    out[1:, :] |= mask[:-1, :]
    out[:, 1:] |= mask[:, :-1]
    return out


def _max_filter(values):
    out = values.copy()
    out[1:, :] = np.maximum(out[1:, :], values[:-1, :])
    out[:, 1:] = np.maximum(out[:, 1:], values[:, :-1])
    return out
