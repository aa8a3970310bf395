"""Fast, faithful reimplementation of the Pathfinder generator (Linsley et al. 2018) with LRA's settings.

Every rule of the original ``snakes2.py``/``snakes.py`` is kept (ceil-rounded coordinates, the 0.3 seeding
and 1.8 overlap thresholds, truncated and deduplicated candidates with the continuity weights, 3 trials
per paddle, the one-step-late mask, snake 1's last paddle left out of the mask, distractors with the
snake contrast only and the 1% free-pixel stop, Lanczos markers, min-max byte scaling). Speed comes from
(1) pre-rendered sprites (see ``pathfinder_sprites``), (2) precomputed seeding sets, (3) running many
independent target-pair attempts at once as arrays and keeping the survivors (the original retries one
attempt at a time; tens to hundreds are rejected per image), (4) a dilated mask kept up to date by
pasting pre-dilated sprites and read only at candidate points, (5) rendering only accepted attempts,
and (6) multiprocessing.

Determinism: images are produced in fixed chunks of CHUNK consecutive indices, each with its own RNG
derived from (seed, resolution, difficulty, chunk index), so the output does not depend on `workers`.

Files: everything is written into a hidden staging sibling `.<difficulty folder>.partial` that is renamed to
the difficulty folder only when every batch is done, so a reader never sees a half dataset. An interrupted
run leaves its finished batches there and the same command resumes from them (other settings start over).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image

from s5lra.atomic import replace_folder, write_bytes
from s5lra.data.pathfinder import DIFFICULTIES, GENERATOR_FILE
from s5lra.data.workers import worker_pool
from s5lra.errors import DataError

from .pathfinder_sprites import (FREE, SEED_BLOCK_LEVEL, SUM_THRESHOLD, Geometry, angle_weights, bytescale,
                                 flip_by_pi, paste, render_marker, translate)

CONTOUR_LENGTH = {"easy": 6, "intermediate": 9, "hard": 14}  # paddles per target snake, per difficulty
#: Images per RNG stream / unit of work. Fixed so that results do not depend on the worker count.
CHUNK = 20
PADDLE_TRIALS = 3        # max_paddle_retrial = 2
DISTRACTOR_ATTEMPTS = 5  # max_distractor_contour_retrial = 4


@dataclass(frozen=True)
class PathfinderParams:
    """One LRA configuration (the TFDS builder's docstring plus the wrapper's defaults)."""

    resolution: int
    padding: int
    aa: int
    margins: tuple[int, ...]
    seed_distance: int
    marker_radius: float
    paddle_length: int
    paddle_thickness: float
    continuity: float
    snake_contrast: float
    paddle_contrast: float
    contour_length: int
    distractor_budget: int                       # num_distractor_snakes = budget // distractor_length
    batch_attempts: int = field(default=1024)    # target-pair attempts run together (speed only)

    @property
    def distractor_length(self) -> int:
        return self.contour_length // 3

    @property
    def n_distractors(self) -> int:
        return self.distractor_budget // self.distractor_length

    def geometry(self, margin: int) -> Geometry:
        return _geometry(self.resolution, self.padding, self.seed_distance, self.paddle_length,
                         self.paddle_thickness, margin, self.aa, self.continuity)

    def metadata_fields(self, margin: int) -> list[str]:
        """Fields [4:11] of a metadata row, formatted as the original's str() of its arguments."""
        return [str(self.continuity), str(self.contour_length), str(self.distractor_length),
                str(self.paddle_length), str(self.paddle_thickness), str(margin), "1"]


_BASE = {  # resolution: (padding, margins, seed distance, marker radius, L, thickness, continuity,
    #                      snake contrast, paddle contrast, distractor budget, batch attempts)
    32: (1, (1,), 7, 1.5, 2, 0.5, 1.0, 2.0, 0.75, 20, 1024),
    64: (1, (1,), 12, 2.5, 5, 1, 1.8, 0.8, 1.0, 22, 512),
    128: (1, (2, 3), 20, 3, 5, 1.5, 1.8, 0.9, 1.0, 35, 512),
    256: (22, (3,), 27, 5, 5, 2, 1.8, 1.0, 1.0, 30, 256),
}


def lra_params(resolution: int = 32, difficulty: str = "hard") -> PathfinderParams:
    """LRA's parameters for a resolution (32, 64, 128, 256) and difficulty (easy, intermediate, hard)."""
    if resolution not in _BASE:
        raise ValueError(f"resolution must be one of {sorted(_BASE)}, got {resolution}")
    if difficulty not in CONTOUR_LENGTH:
        raise ValueError(f"difficulty must be one of {sorted(CONTOUR_LENGTH)}, got {difficulty!r}")
    pad, margins, sd, mr, length, thick, cont, sc, pc, budget, batch = _BASE[resolution]
    return PathfinderParams(resolution, pad, 2, margins, sd, mr, length, thick, cont, sc, pc,
                            CONTOUR_LENGTH[difficulty], budget, batch)


@lru_cache(maxsize=None)
def _geometry(*args) -> Geometry:
    return Geometry(*args)


# ----------------------------------------------------------------------------------------------------
# Sampling


def _extend(g: Geometry, state: np.ndarray, lanes: np.ndarray, piv: np.ndarray, theta: np.ndarray,
            prev_id: np.ndarray, prev_pos: np.ndarray, rng: np.random.Generator):
    """One ``extend_snake`` for many independent lanes at once.

    state: (lanes, 2, width^2) mask and dilated mask (see `Geometry`); updated in place for the lanes
    that succeed, with the PREVIOUS paddle (the one-step-late mask). piv/theta/prev_*: per-lane state of
    the snake. Returns ok (bool per lane) and, for all lanes, new pivot, orientation, sprite id and head.
    """
    n, pad, size, w = len(lanes), g.pad, g.size, g.width
    flat = state.reshape(-1)
    base = lanes * state.shape[1] * state.shape[2]
    offs, off_theta = g.offsets
    py, px = translate(piv[:, 0], piv[:, 1], theta, g.length + 2 * g.margin)
    cy, cx = py[:, None] + offs[:, 0], px[:, None] + offs[:, 1]            # (n, K) candidate heads
    inside = (cy >= 0) & (cy < size) & (cx >= 0) & (cx < size)
    at = (np.clip(cy, 0, size - 1) + pad) * w + np.clip(cx, 0, size - 1) + pad
    dilated = flat[base[:, None] + w * w + at]                               # cv2.dilate(mask, disk(m))
    pmf = angle_weights(off_theta, theta[:, None], g.continuity) * FREE[dilated] * inside
    cmf = np.cumsum(pmf, 1)
    total = cmf[:, -1]
    last_pos = np.where(pmf > 0, np.arange(pmf.shape[1]), 0).max(1)
    choice = np.zeros(n, np.int64)
    ok = np.zeros(n, bool)
    sprites = g.flat_sprites[0]
    block = g.grid(2 * g.radius + 1) - g.radius * (w + 1)
    todo = np.flatnonzero(pmf.sum(1) >= 1e-4)
    for _ in range(PADDLE_TRIALS):  # independent trials against the same state: first acceptable wins
        if not len(todo):
            break
        u = rng.random(len(todo)) * total[todo]
        pick = np.minimum((cmf[todo] > u[:, None]).argmax(1), last_pos[todo])
        patch = flat[(base[todo] + at[todo, pick])[:, None] + block]
        fits = ~(sprites[360 + pick] >= SUM_THRESHOLD[patch]).any(1)        # max(mask + m) < 1.8
        choice[todo[fits]] = pick[fits]
        ok[todo[fits]] = True
        todo = todo[~fits]
    good = np.flatnonzero(ok)
    _paste_masks(g, state, lanes[good], prev_id[good], prev_pos[good])
    rows = np.arange(n)
    return ok, np.stack([py, px], 1), off_theta[choice], 360 + choice, np.stack([cy[rows, choice],
                                                                                 cx[rows, choice]], 1)


def _paste_masks(g: Geometry, state: np.ndarray, lanes: np.ndarray, ids: np.ndarray, pos: np.ndarray):
    """Merge mask sprites at pos into the lanes: M = max(M, sprite) clipped to the image (the zero border
    must stay zero for the overlap test) and D = max(D, pre-dilated sprite)."""
    if not len(lanes):
        return
    w, r, m = g.width, g.radius, g.margin
    flat = state.reshape(-1)
    centre = (pos[:, 0] + g.pad) * w + pos[:, 1] + g.pad
    masks, dilated = g.flat_sprites
    at = (centre - r * (w + 1))[:, None] + g.grid(2 * r + 1)
    idx = (lanes * 2 * w * w)[:, None] + at
    flat[idx] = np.maximum(flat[idx], masks[ids] * g.interior[at])
    idx = (lanes * 2 * w * w + w * w + centre - (r + m) * (w + 1))[:, None] + g.grid(2 * (r + m) + 1)
    flat[idx] = np.maximum(flat[idx], dilated[ids])


def _first_of(status: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Resolve per-trial outcomes (0 retry, 1 success, 2 hard failure) to (success, trial used)."""
    decided = status > 0
    trial = decided.argmax(1)
    return decided.any(1) & (status[np.arange(len(status)), trial] == 1), trial


def _in_image(g: Geometry, *coords) -> np.ndarray:
    return np.logical_and.reduce([(c >= 0) & (c < g.size) for c in coords])


def _seed_targets(g: Geometry, n: int, rng: np.random.Generator):
    """``initialize_two_seeds`` for n attempts: per snake up to 3 trials, retried when head or pivot
    leave the image; snake 1 fails outright when no tail is available at the drawn orientation."""
    flat, starts = g.target_seed_tails
    counts = np.diff(starts)
    deg1 = rng.integers(-180, 180, (n, PADDLE_TRIALS))
    th1 = deg1 * np.pi / 180
    cnt = counts[deg1 + 180]
    idx = flat[np.minimum(starts[deg1 + 180] + (rng.random(deg1.shape) * cnt).astype(np.int64), len(flat) - 1)]
    ty, tx = idx // g.size, idx % g.size
    hy, hx = translate(ty, tx, th1, g.length)
    vy, vx = translate(hy, hx, flip_by_pi(th1), g.length + g.margin)
    status1 = np.where(cnt == 0, 2, np.where(_in_image(g, hy, hx, vy, vx), 1, 0))
    ok1, t1 = _first_of(status1)

    rows = np.arange(n)
    tail1 = np.stack([ty[rows, t1], tx[rows, t1]], 1)
    deg2 = rng.integers(-180, 180, (n, PADDLE_TRIALS))
    th2 = deg2 * np.pi / 180
    phi = rng.integers(0, 360, (n, PADDLE_TRIALS)) * np.pi / 180
    t2y = np.round(tail1[:, :1] + g.seed_distance * np.sin(phi)).astype(np.int64)
    t2x = np.round(tail1[:, 1:] + g.seed_distance * np.cos(phi)).astype(np.int64)
    h2y, h2x = translate(t2y, t2x, th2, g.length)
    v2y, v2x = translate(h2y, h2x, flip_by_pi(th2), g.length + g.margin)
    ok2, t2 = _first_of(np.where(_in_image(g, h2y, h2x, v2y, v2x), 1, 0))
    return dict(ok=ok1 & ok2, tails=np.stack([tail1, np.stack([t2y[rows, t2], t2x[rows, t2]], 1)], 1),
                ids=np.stack([deg1[rows, t1], deg2[rows, t2]], 1) + 180,
                pivots=np.stack([np.stack([vy[rows, t1], vx[rows, t1]], 1),
                                 np.stack([v2y[rows, t2], v2x[rows, t2]], 1)], 1),
                theta=np.stack([th1[rows, t1], th2[rows, t2]], 1))


def sample_target_pairs(g: Geometry, contour_length: int, n: int, rng: np.random.Generator):
    """Run n independent ``two_snakes`` attempts at once; return (masks, ids, positions, tails, heads) of
    those that succeed. Survivors of i.i.d. attempts are exact draws from the accepted distribution."""
    s = _seed_targets(g, n, rng)
    keep = np.flatnonzero(s["ok"])
    m = len(keep)
    state = np.repeat(g.initial_state[None], m, 0)
    ids = np.zeros((m, 2, contour_length), np.int64)
    pos = np.zeros((m, 2, contour_length, 2), np.int64)
    ids[:, :, 0], pos[:, :, 0] = s["ids"][keep], s["tails"][keep]
    piv, theta = s["pivots"][keep], s["theta"][keep]
    alive = np.arange(m)
    for k in range(1, contour_length):
        for snake in (0, 1):
            ok, p, th, sid, head = _extend(g, state, alive, piv[alive, snake], theta[alive, snake],
                                           ids[alive, snake, k - 1], pos[alive, snake, k - 1], rng)
            alive = alive[ok]
            piv[alive, snake], theta[alive, snake] = p[ok], th[ok]
            ids[alive, snake, k], pos[alive, snake, k] = sid[ok], head[ok]
    _paste_masks(g, state, alive, ids[alive, 1, -1], pos[alive, 1, -1])   # only snake 2's last paddle
    return state[alive], ids[alive], pos[alive], s["tails"][keep][alive], pos[alive, :, -1]


def _seed_distractor(g: Geometry, rng: np.random.Generator, cache: dict):
    """``seed_snake`` for one lane against the current mask: (sprite id, tail, pivot, theta) or None."""
    for _ in range(PADDLE_TRIALS):
        deg = int(rng.integers(-180, 180))
        if not g.seed_degree_ok[deg + 180]:  # cv2's -DBL_MAX border: no coordinates, outright failure
            return None
        if deg not in cache:
            cache[deg] = np.flatnonzero(~g.blocked(cache["occupied"], deg))
        avail = cache[deg]
        if not len(avail):
            return None
        tail = divmod(int(avail[rng.integers(len(avail))]), g.size)
        th = deg * np.pi / 180
        hy, hx = translate(tail[0], tail[1], th, g.length)
        vy, vx = translate(hy, hx, flip_by_pi(th), g.length + g.margin)
        if _in_image(g, hy, hx, vy, vx):
            return deg + 180, tail, (int(vy), int(vx)), th
    return None


def add_distractors(g: Geometry, p: PathfinderParams, state: np.ndarray, rng: np.random.Generator
                    ) -> list[tuple[int, int, int]]:
    """``make_many_snakes`` for the distractors: up to 5 attempts each (run as parallel lanes, the first
    success wins, a failed attempt changes nothing), skipped on failure, stopping once fewer than 1% of
    pixels are free. `state` is one lane (2, width^2), updated in place; returns the placed paddles."""
    placed: list[tuple[int, int, int]] = []
    inner = (slice(g.pad, g.pad + g.size),) * 2
    for _ in range(p.n_distractors):
        raw = state[0].reshape(g.width, g.width)[inner]
        if np.count_nonzero(raw <= SEED_BLOCK_LEVEL) / raw.size < 0.01:
            break
        lined = raw > SEED_BLOCK_LEVEL
        lined[0], lined[-1], lined[:, 0], lined[:, -1] = True, True, True, True
        cache = {"occupied": lined}
        seeds = [s for s in (_seed_distractor(g, rng, cache) for _ in range(DISTRACTOR_ATTEMPTS)) if s]
        if not seeds:
            continue
        n = len(seeds)
        lanes = np.repeat(state[None], n, 0)
        ids = np.zeros((n, p.distractor_length), np.int64)
        pos = np.zeros((n, p.distractor_length, 2), np.int64)
        ids[:, 0], pos[:, 0] = [s[0] for s in seeds], [s[1] for s in seeds]
        piv, theta = np.array([s[2] for s in seeds], np.int64), np.array([s[3] for s in seeds])
        alive = np.arange(n)
        for k in range(1, p.distractor_length):
            ok, pv, th, sid, head = _extend(g, lanes, alive, piv[alive], theta[alive], ids[alive, k - 1],
                                            pos[alive, k - 1], rng)
            alive = alive[ok]
            piv[alive], theta[alive], ids[alive, k], pos[alive, k] = pv[ok], th[ok], sid[ok], head[ok]
        if len(alive):
            first = alive[:1]
            _paste_masks(g, lanes, first, ids[first, -1], pos[first, -1])
            state[:] = lanes[first[0]]
            placed += [(int(i), int(y), int(x)) for i, (y, x) in zip(ids[first[0]], pos[first[0]])]
    return placed


def render(g: Geometry, p: PathfinderParams, paddles: Iterable[tuple[int, int, int, float]],
           markers: Sequence[tuple[int, int]]) -> np.ndarray:
    """Max-composite line sprites (level/255 * contrast) and the two markers; byte-scale like imsave."""
    lines = g.sprites[0]
    img = np.zeros((g.size, g.size))
    for sid, y, x, contrast in paddles:
        paste(img, lines[sid] / 255.0 * contrast, y, x)
    for y, x in markers:
        np.maximum(img, render_marker((g.size, g.size), (y, x), p.marker_radius, p.aa) / 255.0, out=img)
    return bytescale(img)


def generate_chunk(p: PathfinderParams, rng: np.random.Generator, n: int):
    """Generate n images: list of (uint8 image, label, margin). Accepted target pairs are pooled per
    margin within the chunk; they are i.i.d., so using them for successive images is exact."""
    pools: dict[int, list] = {m: [] for m in p.margins}
    out = []
    for _ in range(n):
        label = int(rng.integers(2))
        margin = p.margins[int(rng.integers(len(p.margins)))]
        g = p.geometry(margin)
        while not pools[margin]:
            pools[margin] = list(zip(*sample_target_pairs(g, p.contour_length, p.batch_attempts, rng)))
        mask, ids, pos, tails, heads = pools[margin].pop()
        target_contrast = p.paddle_contrast * p.snake_contrast
        paddles = [(int(i), int(y), int(x), target_contrast)
                   for i, (y, x) in zip(ids.reshape(-1), pos.reshape(-1, 2))]
        extra = add_distractors(g, p, mask, rng)
        paddles += [(i, y, x, p.snake_contrast) for i, y, x in extra]
        origin = int(rng.integers(2))
        terminal = origin if label == 1 else 1 - origin
        markers = [tuple(int(v) for v in tails[origin]), tuple(int(v) for v in heads[terminal])]
        out.append((render(g, p, paddles, markers), label, margin))
    return out


# ----------------------------------------------------------------------------------------------------
# Files


def _chunk_rng(seed: int, p: PathfinderParams, chunk: int) -> np.random.Generator:
    return np.random.default_rng([seed, p.resolution, p.contour_length, chunk])


def _png_bytes(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img, "L").save(buf, format="PNG")
    return buf.getvalue()


def _work(task):
    """Worker: generate one chunk, write its PNGs, return (index, label, margin) rows."""
    p, seed, chunk, indices, folder, batch_size = task
    rows = []
    for i, (img, label, margin) in zip(indices, generate_chunk(p, _chunk_rng(seed, p, chunk), len(indices))):
        batch, k = divmod(i, batch_size)
        write_bytes(folder / "imgs" / str(batch) / f"sample_{k}.png", _png_bytes(img))
        rows.append((i, label, margin))
    return rows


def _write_metadata(folder: Path, p: PathfinderParams, batch: int, batch_size: int, rows) -> None:
    """metadata/<batch>.npy: the original's np.save of its list of 11-field rows (a string array)."""
    table = np.array([[f"imgs/{batch}", f"sample_{i - batch * batch_size}.png", str(i - batch * batch_size),
                       str(label)] + p.metadata_fields(margin) for i, label, margin in sorted(rows)])
    buf = io.BytesIO()
    np.save(buf, table)
    write_bytes(folder / "metadata" / f"{batch}.npy", buf.getvalue())


def generate_pathfinder(root, *, resolution: int = 32, difficulty: str = "hard", n: int = 1000, seed: int = 0,
                        workers: int | None = None, batch_size: int = 1000, progress: bool = True,
                        overwrite: bool = False) -> Path:
    """Write n Pathfinder images in the LRA release layout and return the difficulty folder.

    ``<root>/pathfinder<R>/<curv_...>/imgs/<batch>/sample_<k>.png`` (8-bit grayscale),
    ``metadata/<batch>.npy`` (binary .npy string array of 11-field rows), batch = index // batch_size, and
    ``generator.json`` (these settings). The folder appears only when complete (see the module docstring);
    a batch's metadata is written last, after all its images, so a staged batch with metadata is complete and
    a resumed run skips it. A folder already there is kept when it was generated with the same settings,
    otherwise refused unless `overwrite` (it is then replaced once the new one is complete).
    Output depends on (seed, resolution, difficulty, n) only, not on `workers` (default: all cores).
    """
    p = lra_params(resolution, difficulty)
    if n < 0 or batch_size < 1:
        raise ValueError("n must be >= 0 and batch_size >= 1")
    final = Path(root) / f"pathfinder{resolution}" / DIFFICULTIES[difficulty]
    settings = {"resolution": resolution, "difficulty": difficulty, "n": n, "seed": seed, "batch_size": batch_size}
    if final.is_dir() and any(final.iterdir()) and not overwrite:
        if _recorded(final) == settings:
            return final
        raise DataError(f"{final} already holds Pathfinder data ({_origin(final)}), not {settings}; pass "
                        f"--overwrite (overwrite=True) to replace it, or choose another --root")
    folder = final.with_name(f".{final.name}.partial")
    if folder.exists() and _recorded(folder) != settings:  # a staged run with other settings: start over
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / GENERATOR_FILE).write_text(json.dumps(settings, indent=1))
    n_batches = -(-n // batch_size)
    todo_batches = [b for b in range(n_batches) if not (folder / "metadata" / f"{b}.npy").exists()]
    for b in todo_batches:
        (folder / "imgs" / str(b)).mkdir(parents=True, exist_ok=True)
    (folder / "metadata").mkdir(parents=True, exist_ok=True)
    wanted = {b: min(batch_size, n - b * batch_size) for b in todo_batches}
    tasks = []
    for c in range(-(-n // CHUNK)):
        idx = [i for i in range(c * CHUNK, min(n, (c + 1) * CHUNK)) if i // batch_size in wanted]
        if idx:  # a chunk's RNG stream is consumed from its start, so keep a prefix of its indices
            tasks.append((p, seed, c, list(range(c * CHUNK, idx[-1] + 1)), folder, batch_size))
    done: dict[int, list] = {b: [] for b in wanted}
    workers = max(1, min(workers or os.cpu_count() or 1, len(tasks) or 1))
    bar = _progress(sum(len(t[3]) for t in tasks), progress, f"pathfinder{resolution} {difficulty}")
    with bar, (worker_pool(workers) if workers > 1 else contextlib.nullcontext()) as pool:
        for rows in (pool.imap_unordered(_work, tasks) if pool else map(_work, tasks)):
            for row in rows:
                b = row[0] // batch_size
                if b in done:
                    done[b].append(row)
                    if len(done[b]) == wanted[b]:
                        _write_metadata(folder, p, b, batch_size, done.pop(b))
            bar.update(len(rows))
    replace_folder(folder, final)
    return final


def _recorded(folder: Path) -> dict | None:
    try:
        return json.loads((folder / GENERATOR_FILE).read_text())
    except (OSError, ValueError):
        return None


def _origin(folder: Path) -> str:
    have = _recorded(folder)
    return f"generated with {have}" if have else f"no {GENERATOR_FILE}: the LRA release or another generator"


def _progress(total: int, enabled: bool, desc: str):
    from tqdm import tqdm
    return tqdm(total=total, disable=not enabled, desc=desc, unit="img")

