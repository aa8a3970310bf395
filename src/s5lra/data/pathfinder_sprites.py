"""Geometric primitives and pre-rendered sprites for the Pathfinder generator.

The original generator (Linsley et al. 2018, as used by LRA) re-renders every paddle with Pillow, dilates
whole images with OpenCV and resizes with SciPy's old ``imresize`` for each proposal. Everything a paddle
looks like depends only on its orientation, so this module renders each sprite once, with the same
rasteriser (Pillow's line), the same dilation and the same Lanczos resampling, and stores the results as
uint8 arrays. Masks are kept as integer levels k (value k/255) so that the original's float thresholds
(0.3 and 1.8) can be applied exactly as integer lookups.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

#: Level k is "occupied" for seeding iff ceil(k/255 - 0.3) > 0, i.e. k > 76.
SEED_BLOCK_LEVEL = 76


def _sum_threshold() -> np.ndarray:
    """THR[k1] = smallest k2 with float64 k1/255 + k2/255 >= 1.8 (256 if none).

    The original rejects a paddle iff max(mask + paddle_mask) >= 1.8 in float64; at exact ties (e.g.
    208 + 251) float rounding decides, so the table is computed with the same float arithmetic.
    """
    f = np.arange(256) / 255.0
    bad = (f[:, None] + f[None, :]) >= 1.8
    return np.where(bad.any(1), bad.argmax(1), 256).astype(np.int16)


SUM_THRESHOLD = _sum_threshold()
#: 1 - k/255 in float64, the "free" factor of a candidate's probability.
FREE = 1.0 - np.arange(256) / 255.0


def disk(radius: int) -> np.ndarray:
    """Disk structuring element: (2r+1)^2 booleans with x^2 + y^2 <= r^2."""
    y, x = np.ogrid[-radius:radius + 1, -radius:radius + 1]
    return x * x + y * y <= radius * radius


def translate(y, x, theta, dist):
    """Move (y, x) by dist along theta and round UP (ceil), as the original does for every coordinate."""
    return (np.ceil(y + float(dist) * np.sin(theta)).astype(np.int64),
            np.ceil(x + float(dist) * np.cos(theta)).astype(np.int64))


def flip_by_pi(theta):
    """Reverse an orientation, staying in [-pi, pi)."""
    return np.where(theta < 0, theta + np.pi, theta - np.pi)


def candidate_offsets(radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer offsets of the next-paddle candidates around a pivot, and their orientations.

    The original samples angles 0..360 deg in steps of one pixel of arc at `radius`, adds the float
    offsets to the (integer) pivot, truncates to int, drops points outside the image and deduplicates
    (sorted). For an integer pivot p and an in-image point, int(p + o) = p + floor(o), and in-bounds-ness
    is decided by the integer point, so the deduplicated set is a fixed set of offsets filtered per pivot.
    This holds unless some float offset lies within rounding error of an integer; we check it does not.
    """
    angles = np.arange(0, 360, 360.0 / (2 * radius * np.pi)) * np.pi / 180
    fy, fx = radius * np.sin(angles), radius * np.cos(angles)
    for f in (fy, fx):
        frac = f - np.round(f)
        if np.any((np.abs(frac) < 1e-9) & (frac != 0)):
            raise ValueError(f"candidate offset too close to an integer at radius {radius}")
    offs = np.unique(np.stack([np.floor(fy), np.floor(fx)], 1).astype(np.int64), axis=0)
    return offs, np.arctan2(offs[:, 0], offs[:, 1])


def angle_weights(cand_theta, last_theta, continuity: float):
    """Continuity prior: max(cos(min(delta * continuity, pi/2)), 0)^2, delta the wrapped turn angle."""
    d = np.abs(cand_theta - last_theta)
    d = np.minimum(d, 2 * np.pi - d)
    d = np.minimum(d * continuity, 0.5 * np.pi)
    return np.maximum(np.cos(d), 0) ** 2


def bytescale(img: np.ndarray) -> np.ndarray:
    """Old SciPy's bytescale: min-max scale to 0..255, clip, +0.5, truncate (as imresize/imsave did)."""
    lo, hi = float(img.min()), float(img.max())
    scale = 255.0 / ((hi - lo) or 1.0)
    return (((img - lo) * scale).clip(0, 255) + 0.5).astype(np.uint8)


def lanczos(img_u8: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Pillow Lanczos resize of an 8-bit image to (rows, cols), what ``imresize(..., 'lanczos')`` ran."""
    return np.asarray(Image.fromarray(img_u8, "L").resize((size[1], size[0]), Image.LANCZOS))


def render_paddle(theta: float, length: int, thickness: float, margin: int, aa: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Line and mask sprites (uint8, (2R+1)^2, centre = paddle start) of one paddle at orientation theta.

    Drawn at aa-times resolution from the centre for length*aa, width round(thickness*aa); the mask is the
    high-res line dilated by a disk of radius margin*aa; both Lanczos-downsampled through uint8.
    """
    r = length + int(math.ceil(thickness)) + margin
    big, centre = 2 * r * aa + 1, r * aa
    hy, hx = translate(centre, centre, theta, length * aa)
    canvas = Image.new("F", (big, big), "black")
    ImageDraw.Draw(canvas).line([(centre, centre), (int(hx), int(hy))], fill="white",
                                width=int(round(thickness * aa)))
    hi = np.asarray(canvas)
    line = lanczos(bytescale(hi), (2 * r + 1, 2 * r + 1))
    dilated = ndimage.binary_dilation(hi > 0, structure=disk(margin * aa))
    mask = lanczos(dilated.astype(np.uint8) * 255, (2 * r + 1, 2 * r + 1))
    return line, mask


def render_marker(shape: tuple[int, int], centre: tuple[int, int], radius: float, aa: int) -> np.ndarray:
    """Marker disk (uint8, whole image): drawn on an aa-times canvas, Lanczos-downsampled, peak 255."""
    y, x = np.ogrid[-centre[0] * aa:(shape[0] - centre[0]) * aa, -centre[1] * aa:(shape[1] - centre[1]) * aa]
    hi = (x * x + y * y <= (radius * aa) ** 2).astype(np.float64)
    return lanczos(bytescale(hi), shape)


def paste(canvas: np.ndarray, sprite: np.ndarray, y: int, x: int) -> None:
    """canvas = max(canvas, sprite centred at (y, x)), clipped at the canvas edges."""
    r = sprite.shape[0] // 2
    y0, x0 = max(y - r, 0), max(x - r, 0)
    y1, x1 = min(y + r + 1, canvas.shape[0]), min(x + r + 1, canvas.shape[1])
    if y0 < y1 and x0 < x1:
        sub = sprite[y0 - (y - r):y1 - (y - r), x0 - (x - r):x1 - (x - r)]
        np.maximum(canvas[y0:y1, x0:x1], sub, out=canvas[y0:y1, x0:x1])


def grey_dilate(img: np.ndarray, radius: int) -> np.ndarray:
    """Max over a disk of `radius` around each pixel, outside treated as 0 (all values are >= 0)."""
    padded = np.pad(img, radius)
    out = np.zeros_like(img)
    h, w = img.shape
    for dy, dx in np.argwhere(disk(radius)) - radius:
        np.maximum(out, padded[radius + dy:radius + dy + h, radius + dx:radius + dx + w], out=out)
    return out


@dataclass(frozen=True)
class Geometry:
    """Everything precomputable for one (parameter set, paddle margin).

    Sprite ids 0..359 are the seed paddles at integer degrees -180..179; ids 360.. are the extension
    paddles, one per candidate offset, drawn from the candidate back towards the pivot.

    A lane's state is two padded uint8 images flattened to one row each: the mask M and its dilation D
    by disk(margin) (what candidates are weighted by). Dilation distributes over max, so D is kept up to
    date by pasting pre-dilated sprites. Pre-dilating an unclipped sprite differs from dilating the
    clipped one only within `margin` of the image edge, where the padding band (value 255) already
    makes D = 255, so this is exact.
    """

    size: int
    padding: int
    seed_distance: int
    length: int
    thickness: float
    margin: int
    aa: int
    continuity: float

    @property
    def radius(self) -> int:
        """Half-size R of a sprite."""
        return self.length + int(math.ceil(self.thickness)) + self.margin

    @property
    def pad(self) -> int:
        """Zero border around the image in lane state; room for a pre-dilated sprite at any pixel."""
        return self.radius + self.margin

    @property
    def width(self) -> int:
        return self.size + 2 * self.pad

    @cached_property
    def offsets(self) -> tuple[np.ndarray, np.ndarray]:
        return candidate_offsets(self.length + self.margin)

    @cached_property
    def sprites(self) -> tuple[np.ndarray, np.ndarray]:
        """(line, mask) uint8 stacks, indexed by sprite id."""
        seeds = [d * np.pi / 180 for d in range(-180, 180)]
        exts = list(flip_by_pi(self.offsets[1]))
        pairs = [render_paddle(t, self.length, self.thickness, self.margin, self.aa) for t in seeds + exts]
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])

    @cached_property
    def flat_sprites(self) -> tuple[np.ndarray, np.ndarray]:
        """Mask sprites (n, P*P) and their dilations by disk(margin) (n, (P+2m)^2), flattened."""
        masks = self.sprites[1]
        dil = np.stack([grey_dilate(np.pad(m, self.margin), self.margin) for m in masks])
        return masks.reshape(len(masks), -1), dil.reshape(len(dil), -1)

    def grid(self, side: int) -> np.ndarray:
        """Flat offsets of a side x side block (top-left origin) in a padded lane row."""
        r = np.arange(side)
        return (r[:, None] * self.width + r[None, :]).reshape(-1)

    @cached_property
    def initial_state(self) -> np.ndarray:
        """(2, width^2) uint8: the target mask (band of `padding` pixels at 255) and its dilation."""
        n, p = self.size, self.padding
        m = np.full((n, n), 255, np.uint8)
        m[p:n - p, p:n - p] = 0
        return np.stack([np.pad(m, self.pad).reshape(-1), np.pad(grey_dilate(m, self.margin), self.pad).reshape(-1)])

    @cached_property
    def interior(self) -> np.ndarray:
        """Flat uint8 0/1 map of the image inside a padded lane row (mask pastes must not leak out)."""
        return np.pad(np.ones((self.size, self.size), np.uint8), self.pad).reshape(-1)

    def seed_struct(self, deg: int) -> np.ndarray:
        """Offsets (relative to the kernel anchor) of the head-centric seeding struct at `deg` degrees.

        The original draws the mask sprite at (L+m+1, L+m+1) on a (2(L+m)+1)^2 canvas and casts it to
        uint8, so only pixels at exactly 255 belong to the struct; OpenCV anchors it at the centre.
        """
        half = self.length + self.margin
        canvas = np.zeros((2 * half + 1,) * 2, np.uint8)
        paste(canvas, self.sprites[1][deg + 180], half + 1, half + 1)
        return np.argwhere(canvas == 255) - half

    def blocked(self, occupied: np.ndarray, deg: int) -> np.ndarray:
        """Pixels whose struct-dilated occupancy is set: cv2.dilate(occupied, struct) with OpenCV's
        convention dst(p) = max_k src(p + k) and out-of-image pixels ignored (a pixel with no in-image
        p + k comes out False here; the original's -DBL_MAX there is handled by `seed_degree_ok`)."""
        half = self.length + self.margin
        padded = np.pad(occupied, half)
        out = np.zeros_like(occupied)
        h, w = occupied.shape
        for ky, kx in self.seed_struct(deg):
            out |= padded[half + ky:half + ky + h, half + kx:half + kx + w]
        return out

    @cached_property
    def seed_degree_ok(self) -> np.ndarray:
        """(360,) bool, index deg + 180: False where seeding at that orientation always fails.

        The original dilates a float64 mask with ``cv2.dilate``, whose default border value for float64 is
        -DBL_MAX: a pixel whose whole struct footprint lies outside the image gets -DBL_MAX, the 0.3
        threshold leaves it negative, and ``find_available_coordinates`` then returns no coordinates at all
        (its ``min(mask) < 0`` branch), so the seed fails outright whatever the image holds. This happens
        when the small head-centric struct sits entirely on one side of its anchor (at 32 px, 330 of 360
        orientations; at 128 px a few with margin 2, none with margin 3).
        """
        inside = np.ones((self.size, self.size), bool)
        return np.array([self.blocked(inside, d).all() for d in range(-180, 180)])

    @cached_property
    def target_seed_tails(self) -> tuple[np.ndarray, np.ndarray]:
        """Flat indices of allowed first-snake tails for every integer degree, concatenated, and the
        start offsets (length 361). The seeding mask (padding band plus a 2*seed_distance band) never
        depends on the image, so this is computed once. Degrees where seeding always fails (see
        `seed_degree_ok`) get no tails, which makes the attempt fail as in the original."""
        n, band = self.size, 2 * self.seed_distance
        occ = np.zeros((n, n), bool)
        p = self.padding
        occ[:p], occ[n - p:], occ[:, :p], occ[:, n - p:] = True, True, True, True
        occ[:band], occ[n - band:], occ[:, :band], occ[:, n - band:] = True, True, True, True
        tails = [np.flatnonzero(~self.blocked(occ, d)) if self.seed_degree_ok[d + 180] else np.zeros(0, np.int64)
                 for d in range(-180, 180)]
        starts = np.concatenate([[0], np.cumsum([len(t) for t in tails])])
        return np.concatenate(tails), starts
