"""What the cache's source check costs on a Pathfinder-sized folder: every image's size and mtime, each load.

    python experiments/data/bench_source_check.py [--n 200000] [--per-folder 1000] [--out experiments/data/results/source_check.json]

Writes n small files (the size of a 32 px Pathfinder PNG) in `imgs/<batch>/sample_<k>.png` folders of
`per-folder` files under a temporary directory, then times `s5lra.data.cache.source_signature` over the batch
folders (what every `load_task` runs) next to the check it replaced (each folder's mtime and entry count),
and the listing alone. Times are warm (the files were just written, so their inodes are in the page cache);
the first load after a reboot also reads the inodes from disk and is slower. Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

from s5lra.data.cache import source_signature

PNG_BYTES = 450  # a 32 px Pathfinder image is ~300-600 bytes


def write_files(root: Path, n: int, per_folder: int) -> list[Path]:
    payload = os.urandom(PNG_BYTES)
    folders = []
    for i in range(n):
        batch, k = divmod(i, per_folder)
        if k == 0:
            folders.append(root / "imgs" / str(batch))
            folders[-1].mkdir(parents=True)
        (folders[-1] / f"sample_{k}.png").write_bytes(payload)
    return folders


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def old_check(folders: list[Path]) -> None:
    for folder in folders:
        folder.stat()
        len(os.listdir(folder))


def listing_only(folders: list[Path]) -> None:
    for folder in folders:
        with os.scandir(folder) as entries:
            for _ in entries:
                pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--per-folder", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="experiments/data/results/source_check.json")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="s5lra-source-check-"))
    try:
        t = time.perf_counter()
        folders = write_files(tmp, args.n, args.per_folder)
        written_s = time.perf_counter() - t
        first = time.perf_counter()
        source_signature(tmp, folders)
        first_s = time.perf_counter() - first
        rows = {
            "per-file check (size + mtime of every file; what load_task does now)":
                best_of(args.repeats, lambda: source_signature(tmp, folders)),
            "folder check (mtime + entry count per folder; what it replaced)":
                best_of(args.repeats, lambda: old_check(folders)),
            "listing only (scandir, no stat)": best_of(args.repeats, lambda: listing_only(folders)),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{args.n} files in {len(folders)} folders (written in {written_s:.1f} s); best of {args.repeats}, warm; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'check':<72} {'seconds':>8} {'us/file':>8}")
    for name, s in rows.items():
        print(f"{name:<72} {s:>8.3f} {1e6 * s / args.n:>8.2f}")
    print(f"{'per-file check, first run right after writing':<72} {first_s:>8.3f} {1e6 * first_s / args.n:>8.2f}")
    result = {"machine": {"cpu_count": os.cpu_count(), "python": platform.python_version(),
                          "processor": platform.machine(), "load_average_1_5_15": os.getloadavg()},
              "n_files": args.n, "folders": len(folders), "bytes_per_file": PNG_BYTES, "repeats": args.repeats,
              "seconds": rows, "per_file_check_first_s": first_s,
              "command": "python experiments/data/bench_source_check.py " + f"--n {args.n} --per-folder {args.per_folder}"}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(out)


if __name__ == "__main__":
    main()
