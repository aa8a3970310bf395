"""Measure the data side: ListOps generator speed and statistics, reader/cache speed, iterator throughput.

    python experiments/data/bench_data.py [--out experiments/data/results.json] [--quick]

Compares the generated ListOps with the reference statistics of LRA's generator (docs/data.md, section 8
"Reference statistics") and the iterator's Path-X batch rate with the training-step budget (docs/performance.md,
section 2 "The GPU floor": 11 ms floor, 15-35 ms estimated per step of 32 x 16384 on an H100).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import tempfile
import time
from pathlib import Path

import numpy as np

from s5lra.data import BatchIterator, Split, load_task
from s5lra.data.iterator import prefetched
from s5lra.data.listops_gen import ListOpsSettings, generate_examples, generate_listops, sample_tree

PATHX_STEP_BUDGET_MS = {"floor": 11.0, "estimate_low": 15.0, "estimate_high": 35.0}


def listops_generator(n_single: int, n_parallel: int) -> dict:
    s = ListOpsSettings()
    t = time.perf_counter()
    examples = generate_examples(ListOpsSettings(n_train=n_single, n_val=0, n_test=0), workers=1, progress=False)
    single = n_single / (time.perf_counter() - t)
    workers = os.cpu_count() or 1
    t = time.perf_counter()
    generate_examples(ListOpsSettings(n_train=n_parallel, n_val=0, n_test=0, seed=1), workers=workers, progress=False)
    parallel = n_parallel / (time.perf_counter() - t)
    lengths = np.array([len(text.replace("(", " ").replace(")", " ").split()) for text, _ in examples])
    labels = np.bincount([label for _, label in examples], minlength=10) / len(examples)
    rng, accepted, sampled = random.Random(0), 0, 20_000
    for _ in range(sampled):
        tree = sample_tree(rng, s)
        accepted += tree is not None and s.min_length < tree[2] < s.max_length
    return {
        "examples_per_s_one_core": round(single, 1),
        "examples_per_s_all_cores": round(parallel, 1), "cores": workers,
        "minutes_for_100k_one_core": round(100_000 / single / 60, 2),
        "acceptance_rate": accepted / sampled,
        "length_min": int(lengths.min()), "length_median": float(np.median(lengths)),
        "length_p5": float(np.percentile(lengths, 5)), "length_p95": float(np.percentile(lengths, 95)),
        "label_freq": [round(float(p), 4) for p in labels],
        "reference": {"acceptance_rate": 0.08, "length_min": 501, "length_median": 995, "length_p5": 540,
                      "length_p95": 1820, "label_freq_0_and_9": 0.17, "minutes_for_100k_original": 4.5},
    }


def demo_listops(tmp: Path) -> dict:
    """The CPU demo's data: generate 2000/200/200 short examples and build the cache."""
    t = time.perf_counter()
    data = load_task("listops", tmp / "demo", max_len=128, generate=dict(
        n_train=2000, n_val=200, n_test=200, min_length=30, max_length=120, max_depth=4))
    return {"generate_and_cache_s": round(time.perf_counter() - t, 2), "vocab_size": data.spec.vocab_size}


def listops_reader(tmp: Path, n: int) -> dict:
    """Cache build speed on full-length ListOps rows (the release's 100k rows take 100k / rate seconds)."""
    generate_listops(tmp / "full", ListOpsSettings(n_train=n, n_val=100, n_test=100), progress=False)
    t = time.perf_counter()
    load_task("listops", tmp / "full")
    build = time.perf_counter() - t
    t = time.perf_counter()
    load_task("listops", tmp / "full")
    reopen = time.perf_counter() - t
    return {"rows_per_s": round((n + 200) / build, 1), "seconds_for_100k": round(100_000 / ((n + 200) / build), 1),
            "cached_open_ms": round(reopen * 1e3, 2)}


def pathx_iterator(tmp: Path, n: int, steps: int) -> dict:
    """Batches of 32 x 16384 uint8 from a memory-mapped split (warm page cache), shuffled, prefetched."""
    path = tmp / "pathx.npy"
    pixels = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, 16384))
    pixels[:] = np.random.default_rng(0).integers(0, 256, (n, 16384), dtype=np.uint8)
    pixels.flush()
    split = Split(inputs=np.load(path, mmap_mode="r"), lengths=np.full(n, 16384, np.int32),
                  labels=np.zeros(n, np.int32))
    result = {"examples": n, "batch": [32, 16384]}
    for prefetch in (0, 2):
        it = BatchIterator(split, 32, train=True, seed=0)
        t = time.perf_counter()
        batches = prefetched(lambda: it.epoch(0), prefetch) if prefetch else it.epoch(0)
        count = sum(1 for _, _ in zip(range(steps), batches))
        ms = (time.perf_counter() - t) / count * 1e3
        result[f"ms_per_batch_prefetch{prefetch}"] = round(ms, 3)
    result["batches_per_s"] = round(1e3 / result["ms_per_batch_prefetch2"], 1)
    result["headroom_vs_11ms_floor"] = round(PATHX_STEP_BUDGET_MS["floor"] / result["ms_per_batch_prefetch2"], 1)
    result["budget_ms"] = PATHX_STEP_BUDGET_MS
    return result


def pathx_prepare(tmp: Path, n: int) -> dict:
    """Cache build (PNG decoding) speed on one core for sparse 128 px images like Path-X's (14% non-zero)."""
    from PIL import Image

    folder = tmp / "pathfinder128" / "curv_contour_length_14"
    (folder / "imgs" / "0").mkdir(parents=True)
    (folder / "metadata").mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for k in range(n):
        image = (rng.random((128, 128)) < 0.14) * rng.integers(1, 256, (128, 128))
        Image.fromarray(image.astype(np.uint8), "L").save(folder / "imgs" / "0" / f"sample_{k}.png")
        rows.append(f"imgs/0 sample_{k}.png {k} {k % 2} 1.8 14 4 5 1.5 2 1\n")
    (folder / "metadata" / "0.npy").write_text("".join(rows))
    t = time.perf_counter()
    load_task("pathx", tmp, workers=1)
    rate = n / (time.perf_counter() - t)
    return {"images_per_s_one_core": round(rate, 1),
            "minutes_for_200k_on_16_cores": round(200_000 / (16 * rate) / 60, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).with_name("results.json")))
    parser.add_argument("--quick", action="store_true", help="smaller samples (seconds instead of a minute)")
    args = parser.parse_args()
    q = args.quick
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        results = {
            "machine": {"cpu_count": os.cpu_count(), "python": platform.python_version(),
                        "processor": platform.processor() or platform.machine()},
            "listops_generator": listops_generator(300 if q else 1500, 1000 if q else 4000),
            "listops_demo": demo_listops(tmp),
            "listops_reader": listops_reader(tmp, 500 if q else 3000),
            "pathx_iterator": pathx_iterator(tmp, 1024 if q else 4096, 50 if q else 200),
            "pathx_prepare": pathx_prepare(tmp, 200 if q else 1000),
        }
    g, r, p = results["listops_generator"], results["listops_reader"], results["pathx_iterator"]
    x = results["pathx_prepare"]
    rows = [
        ("ListOps generator, 1 core", f"{g['examples_per_s_one_core']} ex/s ({g['minutes_for_100k_one_core']} min/100k;"
                                      f" LRA's original ~{g['reference']['minutes_for_100k_original']})"),
        (f"ListOps generator, {g['cores']} cores", f"{g['examples_per_s_all_cores']} ex/s"),
        ("ListOps acceptance", f"{g['acceptance_rate']:.3f} (reference ~0.08)"),
        ("ListOps lengths min/p5/median/p95", f"{g['length_min']}/{g['length_p5']:.0f}/{g['length_median']:.0f}/"
                                              f"{g['length_p95']:.0f} (reference 501/540/995/1820)"),
        ("ListOps labels 0 / 9 / mean(1-8)", f"{g['label_freq'][0]:.3f} / {g['label_freq'][9]:.3f} / "
                                             f"{np.mean(g['label_freq'][1:9]):.3f} (reference ~0.17 / 0.17 / 0.08)"),
        ("Demo ListOps generate + cache", f"{results['listops_demo']['generate_and_cache_s']} s"),
        ("ListOps cache build", f"{r['rows_per_s']} rows/s ({r['seconds_for_100k']} s per 100k rows);"
                                f" cached open {r['cached_open_ms']} ms"),
        ("Path-X batch 32x16384, no prefetch", f"{p['ms_per_batch_prefetch0']} ms"),
        ("Path-X batch 32x16384, prefetch 2", f"{p['ms_per_batch_prefetch2']} ms ({p['headroom_vs_11ms_floor']}x "
                                              f"faster than the 11 ms step floor)"),
        ("Path-X cache build, 1 core", f"{x['images_per_s_one_core']} images/s "
                                       f"(~{x['minutes_for_200k_on_16_cores']} min for 200k on 16 cores)"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    Path(args.out).write_text(json.dumps(results, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
