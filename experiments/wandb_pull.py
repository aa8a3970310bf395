"""Pull W&B runs into run directories that `python -m s5lra.report` reads.

    python experiments/wandb_pull.py ENTITY/PROJECT [--out experiments/wandb_runs] [--group G] [--tag T]
    python -m s5lra.report experiments/wandb_runs --out experiments/results

For runs on W&B only: a local run, offline or online, already has its run directory (metrics.jsonl and
results.json hold what it sent to W&B), which the report reads directly.

Online it uses the W&B public API (needs `wandb login` or WANDB_API_KEY) and takes finished runs only; without
network it fails within seconds with a message instead of hanging.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from urllib.parse import urlparse

from s5lra.report.wandb_runs import HISTORY_KEYS, WandbRun, write_run_dir

API_TIMEOUT_S = 20


def api_run_to_wandb_run(run) -> WandbRun:
    """Plain values from a `wandb.apis.public.Run` (config, summary, history of the report's keys)."""
    history = [{k: v for k, v in row.items() if k in HISTORY_KEYS and v is not None}
               for row in run.scan_history()]
    summary = {k: v for k, v in dict(run.summary).items() if not k.startswith("_wandb")}
    config = {k: v for k, v in dict(run.config).items() if not k.startswith("_")}
    meta = getattr(run, "metadata", None) or {}
    hardware = f"{meta['gpu_count']} x {meta['gpu']}" if meta.get("gpu_count") else meta.get("cpu_model")
    return WandbRun(run.id, config, summary, history, hardware, list(run.tags or []), run.group)


def _check_reachable(base_url: str) -> None:
    """Fail fast (a few seconds) when the W&B server cannot be reached, instead of retrying for minutes."""
    url = urlparse(base_url)
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout=5).close()
    except OSError as err:
        sys.exit(f"cannot reach W&B at {base_url} ({err}). Pulling needs network; a local run's own directory "
                 f"needs no pulling (python -m s5lra.report <run directories>).")


def pull_project(path: str, out: str, group: str | None, tag: str | None) -> list:
    import wandb

    _check_reachable(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai"))
    try:
        api = wandb.Api(timeout=API_TIMEOUT_S)
    except wandb.errors.UsageError as err:
        sys.exit(f"W&B: {err}")
    filters = {"state": "finished"}
    if group:
        filters["group"] = group
    if tag:
        filters["tags"] = {"$in": [tag]}
    return [write_run_dir(api_run_to_wandb_run(run), out) for run in api.runs(path, filters=filters)]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("project", help="ENTITY/PROJECT on W&B")
    parser.add_argument("--out", default="experiments/wandb_runs", help="where run directories go")
    parser.add_argument("--group", help="only runs of this W&B group")
    parser.add_argument("--tag", help="only runs with this tag")
    args = parser.parse_args(argv)
    written = pull_project(args.project, args.out, args.group, args.tag)
    for path in written:
        print(path)
    if not written:
        sys.exit("no runs found")


if __name__ == "__main__":
    main()
