"""Reproduction reports: training run directories compared with the S5 paper's LRA numbers.

`python -m s5lra.report RUN_DIR... --out experiments/results` writes a Markdown table, a JSON summary and
PNG plots. W&B runs become run directories first (`s5lra.report.wandb_runs`, `experiments/wandb_pull.py`).
"""

from s5lra.report.build import build_report
from s5lra.report.runs import Run, load_run, load_runs

__all__ = ["Run", "build_report", "load_run", "load_runs"]
