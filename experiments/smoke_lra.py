"""Reduced-scale LRA suite (`make smoke-lra`): every task's pipeline end to end on a CPU in minutes.

Writes tiny data sets in the real release formats (ListOps TSVs from the generator, aclImdb folders, AAN TSVs,
CIFAR-10 pickles, Pathfinder 32 px and Path-X 128 px PNGs + metadata) under one data root, trains
`experiment=smoke/<task>` for each (the paper's architecture and optimizer for a few dozen steps; see
configs/experiment/smoke/), and reports all runs with `s5lra.report`. This proves that data, model, training
and report fit together for all six tasks; the accuracies mean nothing at this scale.

    python experiments/smoke_lra.py [--tasks text image] [--out-root outputs/smoke]
                                    [--report experiments/results/smoke] [overrides...]
"""

from __future__ import annotations

import argparse
import json
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from s5lra.data.listops_gen import ListOpsSettings, generate_listops
from s5lra.data.pathfinder_gen import generate_pathfinder
from s5lra.report.build import build_report

TASKS = ("listops", "text", "retrieval", "image", "pathfinder", "pathx")
REPO = Path(__file__).resolve().parent.parent
N_TRAIN, N_EVAL = 64, 16  # 8 steps per epoch at batch 8, so 24 steps give 3 evaluations
# A review's sentiment word decides its label, so a model could in principle learn the task from a few examples.
FILLER = "the a film plot actor scene story music ending was is and of it this very quite rather".split()
SENTIMENT = ({0: "awful", 1: "great"}, {0: "boring", 1: "moving"})


def text_doc(rng: np.random.Generator, label: int, n_words: int) -> str:
    words = rng.choice(FILLER, n_words).tolist()
    for table in SENTIMENT:
        words.insert(int(rng.integers(len(words))), table[label])
    return " ".join(words).capitalize() + "."


def write_listops(root: Path, rng: np.random.Generator) -> None:
    generate_listops(root, ListOpsSettings(n_train=N_TRAIN, n_val=N_EVAL, n_test=N_EVAL, max_depth=6, max_args=5,
                                           min_length=10, max_length=100, seed=int(rng.integers(2**31))),
                     workers=1, progress=False)


def write_imdb(root: Path, rng: np.random.Generator) -> None:
    """aclImdb/{train,test}/{pos,neg}/<id>_<stars>.txt, as in aclImdb_v1.tar.gz (test doubles as validation)."""
    for split, n in (("train", N_TRAIN), ("test", N_EVAL)):
        for label, name in enumerate(("neg", "pos")):
            folder = root / "aclImdb" / split / name
            folder.mkdir(parents=True)
            for i in range(n // 2):
                stars = int(rng.integers(7, 11) if label else rng.integers(1, 5))
                (folder / f"{i}_{stars}.txt").write_text(text_doc(rng, label, int(rng.integers(100, 400))))


def write_aan(root: Path, rng: np.random.Generator) -> None:
    """tsv_data/new_aan_pairs.{train,eval,test}.tsv: `label, id1, id2, text1, text2`, no header, no quoting."""
    folder = root / "tsv_data"
    folder.mkdir(parents=True)
    for split, n in (("train", N_TRAIN), ("eval", N_EVAL), ("test", N_EVAL)):
        rows = []
        for i in range(n):
            label = i % 2
            docs = [text_doc(rng, label, int(rng.integers(200, 600))) for _ in range(2)]
            rows.append(f"{label}\t{split}{i}a\t{split}{i}b\t{docs[0]}\t{docs[1]}\n")
        (folder / f"new_aan_pairs.{split}.tsv").write_text("".join(rows))


def write_cifar(root: Path, rng: np.random.Generator) -> None:
    """cifar-10-batches-py/: five training pickles and test_batch (uint8 RGB rows of 3072), as in the release."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        n = N_EVAL if name == "test_batch" else (N_TRAIN + N_EVAL) // 5
        batch = {b"batch_label": name.encode(), b"labels": rng.integers(0, 10, n).tolist(),
                 b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"filenames": [b"smoke.png"] * n}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"class"] * 10}))


def write_pathfinder(resolution: int):
    def write(root: Path, rng: np.random.Generator) -> None:
        generate_pathfinder(root, resolution=resolution, n=(N_TRAIN + 2 * N_EVAL) * 5 // 4,
                            seed=int(rng.integers(2**31)), workers=1, progress=False)
    return write


FIXTURES = {"listops": write_listops, "text": write_imdb, "retrieval": write_aan, "image": write_cifar,
            "pathfinder": write_pathfinder(32), "pathx": write_pathfinder(128)}


def train(task: str, data_root: Path, run_dir: Path, overrides: list[str]) -> dict:
    """One `run_train.py` subprocess, as a user would start it; returns its results.json plus the train losses."""
    shutil.rmtree(run_dir, ignore_errors=True)  # a fixed folder per task, so the report sees one run each
    command = [sys.executable, str(REPO / "run_train.py"), f"experiment=smoke/{task}", "logger=none",
               f"paths.data_dir={data_root}", f"hydra.run.dir={run_dir}", *overrides]
    log = run_dir.with_suffix(".log")
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f:
        if subprocess.run(command, cwd=REPO, stdout=f, stderr=subprocess.STDOUT).returncode:
            raise SystemExit(f"smoke/{task} failed; see {log}")
    results = json.loads((run_dir / "results.json").read_text())
    events = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    results["train_losses"] = [e["loss"] for e in events if e["split"] == "train"]
    return results


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    parser.add_argument("--out-root", type=Path, default=Path("outputs/smoke"))
    parser.add_argument("--report", type=Path, default=Path("experiments/results/smoke"))
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every run, e.g. trainer.max_steps=4")
    args = parser.parse_args(argv)

    rows = []
    with tempfile.TemporaryDirectory(prefix="s5lra-smoke-") as tmp:
        data_root = Path(tmp)
        for task in args.tasks:
            start = time.time()
            FIXTURES[task](data_root, np.random.default_rng(TASKS.index(task)))
            written = time.time()
            results = train(task, data_root, args.out_root.resolve() / task, args.overrides)
            rows.append((task, results, written - start, time.time() - written))
            print(f"smoke/{task}: done in {time.time() - start:.0f} s", flush=True)
    print_summary(rows)
    for path in build_report([args.out_root / task for task in args.tasks], args.report):
        print(path)


def print_summary(rows) -> None:
    print(f"\n{'task':<11}{'params':>10}{'steps':>7}{'data s':>8}{'train s':>9}  {'train loss first -> last':<26}"
          f"{'test acc':>9}{'majority':>9}  status")
    for task, r, data_s, train_s in rows:
        losses = r["train_losses"]
        print(f"{task:<11}{r['n_params']:>10,}{r['steps']:>7}{data_s:>8.0f}{train_s:>9.0f}  "
              f"{losses[0]:>8.3f} -> {losses[-1]:<14.3f}{r['test_accuracy']:>9.3f}{r['majority_baseline']:>9.3f}"
              f"  {r['status']}")


if __name__ == "__main__":
    main()
