"""A lower bound on GPU time per epoch for each paper experiment, from the memory-traffic model of
docs/performance.md (section 2 "The GPU floor").

    python experiments/bench/epoch_floor.py                    # H100: 3.0 TB/s measured copy bandwidth
    python experiments/bench/epoch_floor.py --bandwidth 2000   # another device, in GB/s

An estimate, not a measurement. The S5 layer is memory-bound at the paper's sizes (P' ≈ H), so a training step
of one layer moves at least B·L·(88·P'·D + 28·H) bytes for forward + backward (complex64 states, D directions,
XLA matmuls around an ideal scan: docs/performance.md §2), and evaluation moves 16/40 of that per example (the ideal
scan's forward share). Everything else (encoder, pooling, optimizer, input pipeline, launch gaps) is left out,
so a real epoch takes longer; the reference's estimate for Path-X is 15-35 ms per step against the 27 ms floor
this gives. Prints a table and writes JSON (--out).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from table import print_table
from train_step import PAPER_LEN, load_config

TASKS = ("listops", "text", "retrieval", "image", "pathfinder", "pathx")
# (train, val + test) examples of the standard splits (docs/data.md, section 4 "Splits"; retrieval: pairs,
# held-out ≈ 18.1k + 17.4k; text: val is the test split, as in LRA).
SPLIT_SIZES = {
    "listops": (96_000, 4_000),
    "text": (25_000, 25_000),
    "retrieval": (147_086, 35_527),
    "image": (45_000, 15_000),
    "pathfinder": (160_000, 40_000),
    "pathx": (160_000, 40_000),
}
COLUMNS = [("task", "<11", "task"), ("B", ">4", "batch"), ("L", ">7", "L"), ("GB/step", ">9.2f", "step_gb"),
           ("ms/step", ">9.1f", "step_ms"), ("min/epoch", ">11.2f", "epoch_min"), ("epochs", ">8", "epochs"),
           ("run h", ">7.2f", "run_h")]
EVAL_SHARE = 16 / 40  # forward-only traffic of the ideal scan relative to forward + backward


def floor(task: str, bandwidth_gbps: float) -> dict:
    cfg = load_config([f"experiment=lra/{task}"])
    m, ssm = cfg.model, cfg.model.ssm
    states = ssm.state_size // 2 if ssm.conj_sym else ssm.state_size
    directions = 2 if ssm.bidirectional else 1
    sequences = 2 if task == "retrieval" else 1  # a retrieval example is two documents
    bytes_per_token = m.n_layers * (88 * states * directions + 28 * m.d_model)
    train, held_out = SPLIT_SIZES[task]
    step_bytes = cfg.trainer.batch_size * sequences * PAPER_LEN[task] * bytes_per_token
    epoch_bytes = (train + EVAL_SHARE * held_out) * sequences * PAPER_LEN[task] * bytes_per_token
    epoch_s = epoch_bytes / (bandwidth_gbps * 1e9)
    return dict(task=task, batch=cfg.trainer.batch_size, L=PAPER_LEN[task], layers=m.n_layers, H=m.d_model,
                P_states=states, directions=directions, step_gb=step_bytes / 1e9,
                step_ms=1e3 * step_bytes / (bandwidth_gbps * 1e9), epoch_min=epoch_s / 60,
                epochs=cfg.trainer.epochs, run_h=epoch_s * cfg.trainer.epochs / 3600)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bandwidth", type=float, default=3000.0, help="device copy bandwidth, GB/s")
    ap.add_argument("--out", default="experiments/bench/results/epoch_floor_h100.json")
    args = ap.parse_args()
    rows = [floor(task, args.bandwidth) for task in TASKS]
    print(f"floor at {args.bandwidth:.0f} GB/s (an estimate: real runs are slower)")
    print_table(rows, COLUMNS)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(dict(bandwidth_gbps=args.bandwidth, estimate=True, rows=rows), indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
