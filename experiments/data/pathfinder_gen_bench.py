"""Measure the Pathfinder generator: seconds per image on one core and image statistics.

    .venv/bin/python experiments/data/pathfinder_gen_bench.py [--n32 200] [--n128 40] [--out FILE] [--sheets DIR]

Runs in one process (one core). Statistics are those the reference quotes for the original algorithm
(32 px: mean 20.1/255, 34% non-zero, 8% >= 128; 128 px: 7.9/255, 14%, 3%), plus how many two-snake
attempts one accepted pair costs (reference ~330 at 32 px, ~230 at 128 px) and how many distractors get
placed (reference at 32 px: 38 in 40 images). Attempts and distractors are counted on batches of 4096
attempts per margin until `--pairs` pairs are accepted (at most 40 batches).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from s5lra.data.pathfinder_gen import add_distractors, generate_chunk, lra_params, sample_target_pairs

REFERENCE = {32: {"mean": 20.1, "nonzero": 0.34, "ge128": 0.08, "s_per_image": 0.2,
                  "attempts_per_accepted_pair": 330, "distractors_per_image": 38 / 40},
             128: {"mean": 7.9, "nonzero": 0.14, "ge128": 0.03, "s_per_image": 2.0,
                   "attempts_per_accepted_pair": 230}}
BATCH, MAX_BATCHES = 4096, 40


def save_contact_sheet(images, labels, path: Path, *, cols: int = 8, limit: int = 32) -> Path:
    """Write a PNG grid of 2-D uint8 images, each captioned with its label, for a person to look at."""
    images = [np.asarray(im, np.uint8) for im in list(images)[:limit]]
    if not images:
        raise ValueError("no images to show")
    side = images[0].shape[0]
    scale = max(1, 128 // side)
    cell, caption = side * scale, 14
    rows = -(-len(images) // cols)
    sheet = Image.new("L", (cols * (cell + 4), rows * (cell + caption + 4)), 96)
    draw = ImageDraw.Draw(sheet)
    for i, (im, lab) in enumerate(zip(images, labels)):
        x, y = (i % cols) * (cell + 4) + 2, (i // cols) * (cell + caption + 4) + 2
        sheet.paste(Image.fromarray(im).resize((cell, cell), Image.NEAREST), (x, y))
        draw.text((x + 2, y + cell + 1), f"{i}: {'connected' if int(lab) else 'apart'} ({lab})", fill=255)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path


def measure(resolution: int, n: int, seed: int = 0, sheets: Path | None = None, pairs: int = 200) -> dict:
    p = lra_params(resolution, "hard")
    t = time.perf_counter()
    for m in p.margins:  # one-off per worker process: sprites and seeding sets
        g = p.geometry(m)
        g.flat_sprites, g.target_seed_tails
    setup = time.perf_counter() - t
    t = time.perf_counter()
    out = generate_chunk(p, np.random.default_rng(seed), n)
    per_image = (time.perf_counter() - t) / n
    imgs = np.stack([o[0] for o in out]).astype(np.float64)
    rng = np.random.default_rng(seed + 1)
    attempts, accepted, distractors = {}, {}, []
    for m in p.margins:
        g = p.geometry(m)
        attempts[m] = accepted[m] = 0
        while accepted[m] < pairs and attempts[m] < MAX_BATCHES * BATCH:
            state, *_ = sample_target_pairs(g, p.contour_length, BATCH, rng)
            attempts[m], accepted[m] = attempts[m] + BATCH, accepted[m] + len(state)
            distractors += [len(add_distractors(g, p, s, rng)) // p.distractor_length for s in state]
    if sheets:
        save_contact_sheet([o[0] for o in out], [o[1] for o in out], sheets / f"pathfinder{resolution}.png")
    return {
        "resolution": resolution, "images": n, "s_per_image": per_image, "setup_s": setup,
        "mean": imgs.mean(), "nonzero": (imgs > 0).mean(), "ge128": (imgs >= 128).mean(),
        "label_mean": float(np.mean([o[1] for o in out])),
        "attempts_per_accepted_pair": {str(m): attempts[m] / max(accepted[m], 1) for m in p.margins},
        "accepted_pairs": {str(m): accepted[m] for m in p.margins},
        # margins are drawn uniformly per image, so an image costs the mean over margins
        "attempts_per_image": float(np.mean([attempts[m] / max(accepted[m], 1) for m in p.margins])),
        "distractors_per_image": float(np.mean(distractors)) if distractors else None,
        "distractors_sem": float(np.std(distractors) / np.sqrt(len(distractors))) if distractors else None,
        "reference": REFERENCE[resolution],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n32", type=int, default=200)
    ap.add_argument("--n128", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "pathfinder_gen_bench.json")
    ap.add_argument("--sheets", type=Path, help="also write contact sheets of the measured images here")
    ap.add_argument("--pairs", type=int, default=200, help="accepted pairs per margin for attempts/distractors")
    args = ap.parse_args()
    rows = [measure(r, n, args.seed, args.sheets, args.pairs) for r, n in ((32, args.n32), (128, args.n128))]
    print(f"{'res':>4} {'s/img':>7} {'ref s':>6} {'speedup':>7} {'mean':>6} {'ref':>5} {'nz':>5} {'ref':>5} "
          f"{'>=128':>6} {'ref':>5} {'labels':>6} {'att/pair':>14} {'distr/img':>9}")
    for r in rows:
        ref = r["reference"]
        att = "/".join(f"{v:.0f}" for v in r["attempts_per_accepted_pair"].values())
        print(f"{r['resolution']:>4} {r['s_per_image']:>7.4f} {ref['s_per_image']:>6.1f} "
              f"{ref['s_per_image'] / r['s_per_image']:>6.0f}x {r['mean']:>6.2f} {ref['mean']:>5.1f} "
              f"{r['nonzero']:>5.3f} {ref['nonzero']:>5.2f} {r['ge128']:>6.3f} {ref['ge128']:>5.2f} "
              f"{r['label_mean']:>6.2f} {att:>14} {r['distractors_per_image']:>9.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
