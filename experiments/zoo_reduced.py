"""The S5 family side by side on CPU (`make zoo-reduced`): S5, S5-PTD, S4D-Lin, S4D-Inv, LRU, selective S5.

Every variant is the same `run_train.py` run with its `model.ssm` switches on top of `experiment=zoo_reduced/<task>`
(a small model on two reduced tasks, both generated on first use: short ListOps, <= 100 tokens, and long
ListOps, 250-500 tokens at LRA's tree limits), for each seed. Runs go to <out-root>/<task>/<variant>/seed<k>;
a finished run (results.json with status completed) is kept and an unfinished one continues from its last
checkpoint, so an interrupted sweep resumes. The report (`s5lra.report`: results.md, summary.json, curves) and
a variant × task table (zoo.md) go to --report. All numbers are reduced scale.

    python experiments/zoo_reduced.py [--tasks listops listops_long] [--variants s5 lru] [--seeds 0 1]
                                      [--out-root outputs/zoo_reduced] [--report experiments/results/zoo_reduced]
                                      [--report-only]
                                      [overrides...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from s5lra.report.build import build_report

REPO = Path(__file__).resolve().parent.parent
TASKS = ("listops", "listops_long")
# model.ssm (and, for the LRU, optimizer) switches per variant.
VARIANTS = {
    "s5": [],
    "s5_ptd": ["model.ssm.init=ptd", "model.ssm.conj_sym=false"],
    "s4d_lin": ["model.ssm.init=s4d_lin"],
    "s4d_inv": ["model.ssm.init=s4d_inv"],
    "lru": ["model.ssm.kind=lru", "optimizer.groups=standard",
            "model.ssm.r_min=0.0", "model.ssm.r_max=0.9"],  # lra_lru/listops's ring
    "selective": ["model.ssm.selective=true"],
}


def finished(run_dir: Path) -> bool:
    path = run_dir / "results.json"
    return path.exists() and json.loads(path.read_text()).get("status") == "completed"


def train(task: str, variant: str, seed: int, run_dir: Path, data_dir: Path, extra: list[str]) -> None:
    """One `run_train.py` subprocess, as a user would start it, logging to <run_dir>.log."""
    # resume=auto: a run an earlier sweep left unfinished continues from its last checkpoint
    command = [sys.executable, str(REPO / "run_train.py"), f"experiment=zoo_reduced/{task}", "logger=none",
               "trainer.resume=auto",
               f"seed={seed}", f"paths.data_dir={data_dir}", f"hydra.run.dir={run_dir}",
               *VARIANTS[variant], *extra]
    log = run_dir.parent / f"{run_dir.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f:
        if subprocess.run(command, cwd=REPO, stdout=f, stderr=subprocess.STDOUT).returncode:
            raise SystemExit(f"zoo_reduced {task}/{variant}/seed{seed} failed; see {log}")


def zoo_table(rows: dict, tasks, variants) -> str:
    """Markdown: one row per variant, one column per task, mean ± std of test accuracy at best validation."""
    head = "| variant | " + " | ".join(tasks) + " | parameters |\n|---|" + "---|" * (len(tasks) + 1) + "\n"
    lines = []
    for v in variants:
        cells = []
        for t in tasks:
            acc = [100 * r["test_accuracy"] for r in rows.get((t, v), [])]
            if not acc:
                cells.append("—")
                continue
            std = f" ± {statistics.stdev(acc):.1f}" if len(acc) > 1 else ""
            cells.append(f"{statistics.fmean(acc):.1f}{std} (n={len(acc)})")
        params = sorted({r["n_params"] for t in tasks for r in rows.get((t, v), [])})
        lines.append(f"| {v} | " + " | ".join(cells) + f" | {', '.join(f'{p:,}' for p in params) or '—'} |")
    return head + "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--out-root", type=Path, default=Path("outputs/zoo_reduced"))
    parser.add_argument("--report", type=Path, default=Path("experiments/results/zoo_reduced"))
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: report the runs that finished (e.g. of an interrupted sweep)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every run, e.g. trainer.max_steps=20")
    argv = sys.argv[1:] if argv is None else argv
    # key=value items are overrides wherever they stand (`--seeds 0 1 trainer.epochs=1` must not read them as seeds)
    overrides = [a for a in argv if "=" in a and not a.startswith("-")]
    args = parser.parse_args([a for a in argv if a not in overrides])
    args.overrides = overrides

    rows, run_dirs = {}, []
    for task in args.tasks:
        for variant in args.variants:
            for seed in args.seeds:
                run_dir = args.out_root.resolve() / task / variant / f"seed{seed}"
                if not finished(run_dir):
                    if args.report_only:
                        continue
                    start = time.time()
                    train(task, variant, seed, run_dir, args.data_dir.resolve(), args.overrides)
                    print(f"zoo_reduced {task}/{variant}/seed{seed}: {time.time() - start:.0f} s", flush=True)
                rows.setdefault((task, variant), []).append(json.loads((run_dir / "results.json").read_text()))
                run_dirs.append(run_dir)
    table = zoo_table(rows, args.tasks, args.variants)
    print("\n" + table)
    written = build_report(run_dirs, args.report)
    note = ("# The S5 family on reduced tasks (CPU)\n\nReduced scale (`experiments/zoo_reduced.py`): small models "
            "on short (<= 100 tokens) and long (250-500 tokens) ListOps; test accuracy (%) at the best validation "
            f"epoch, mean ± std over seeds. Overrides for every run: {' '.join(args.overrides) or 'none'}.\n\n")
    (args.report / "zoo.md").write_text(note + table)
    for path in [*written, args.report / "zoo.md"]:
        print(path)


if __name__ == "__main__":
    main()
