"""The LRA W&B workspace as code: `python -m s5lra.dashboard ENTITY/PROJECT [--tag TAG ...] [--url URL]`.

Builds a `wandb_workspaces` workspace over the runs the training loop logs (runs grouped by experiment, the W&B
group the loop sets): validation/test accuracy and the losses against epoch, both learning rates, throughput,
and each task's test accuracy at the best-validation epoch (mean and spread over seeds) beside the paper's.
`--tag` keeps only runs with those tags (the loop tags every run with its task and `seed<N>`); `--url` updates
that existing workspace in place, otherwise a new one is created and its URL printed; `--dry-run` prints the
workspace without uploading. Needs the `dashboard` extra (wandb-workspaces) and, to upload, network and a
W&B API key.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from urllib.parse import urlparse

from s5lra.report.paper import PAPER_ACCURACY, PAPER_AVERAGE, TASKS, task_title

WORKSPACE_NAME = "S5 on LRA"
SPLITS = ("train", "val", "test")
# What the logger (s5lra.train.loggers.RunLogger) sends to W&B: history rows keyed "<split>/<metric>" plus the
# learning rates under their own names, all against the logged `step` and `epoch`; the accuracies at the end
# go to the run summary. tests/test_dashboard.py checks these names against what the logger really writes.
X_AXIS = "epoch"
LEARNING_RATES = ("lr", "ssm_lr")
SUMMARY_ACCURACY = "test_accuracy"  # test accuracy at the best-validation epoch (results.json's name)
SUMMARY_BEST_VAL = "best_val_accuracy"
TASK_CONFIG_KEY = "dataset.name"  # the run config's task
CONNECT_TIMEOUT_S = 5.0


class DashboardError(RuntimeError):
    """The workspace cannot be uploaded (missing extra, no network, no API key); the message says what to do."""


def history_key(split: str, metric: str) -> str:
    return f"{split}/{metric}"


def _workspaces():
    try:
        import wandb_workspaces.reports.v2 as wr
        import wandb_workspaces.workspaces as ws
    except ImportError as err:
        raise DashboardError(f"the dashboard needs wandb-workspaces ({err}): pip install -e '.[dashboard]' "
                             "(pinned: pip install -r requirements-extras.txt)") from None
    return ws, wr


def paper_table() -> str:
    """The paper's S5 test accuracies as a Markdown table (s5lra.report.paper)."""
    rows = [f"| {task_title(t)} | `{t}` | {PAPER_ACCURACY[t]:.2f} |" for t in TASKS]
    return "\n".join(["### S5 (Smith et al., ICLR 2023), test accuracy %", "",
                      "| Task | dataset.name | Paper |", "|---|---|---|", *rows,
                      f"| **Average** | | **{PAPER_AVERAGE:.2f}** |", "",
                      "Runs log accuracy as a fraction (0.6215 = 62.15 %); the bars beside this table show "
                      "`summary.test_accuracy` (test accuracy at the best-validation epoch) per task, "
                      "mean and standard deviation over seeds."])


def build_workspace(entity: str, project: str, *, tags: list[str] | None = None, name: str = WORKSPACE_NAME):
    """The workspace object (nothing is uploaded): its sections, panels and run set."""
    ws, wr = _workspaces()

    def line(title, y, **kw):
        return wr.LinePlot(title=title, x=X_AXIS, y=list(y), title_x=X_AXIS, **kw)

    accuracy = [line(f"{split} accuracy", [history_key(split, "accuracy")], range_y=(0, 1))
                for split in ("val", "test", "train")]
    loss = [line(f"{split} loss", [history_key(split, "loss")]) for split in ("train", "val")]
    task = wr.Config(TASK_CONFIG_KEY)
    results = [
        wr.BarPlot(title="test accuracy at best validation, per task", metrics=[wr.SummaryMetric(SUMMARY_ACCURACY)],
                   groupby=task, groupby_aggfunc="mean", groupby_rangefunc="stddev", range_x=(0, 1)),
        wr.BarPlot(title="best validation accuracy, per task", metrics=[wr.SummaryMetric(SUMMARY_BEST_VAL)],
                   groupby=task, groupby_aggfunc="mean", groupby_rangefunc="stddev", range_x=(0, 1)),
        wr.MarkdownPanel(markdown=paper_table()),
    ]
    sections = [
        ws.Section(name="Results against the paper", panels=results, is_open=True),
        ws.Section(name="Accuracy", panels=accuracy, is_open=True),
        ws.Section(name="Loss", panels=loss, is_open=True),
        ws.Section(name="Learning rates", panels=[line("learning rates", LEARNING_RATES)], is_open=True),
        ws.Section(name="Throughput", panels=[line(f"{split} examples/s", [history_key(split, "examples_per_s")])
                                              for split in ("train", "val")]),
    ]
    runset = ws.RunsetSettings(
        groupby=[ws.Metric("Group")],
        filters=[ws.Tags().isin(list(tags))] if tags else "",
        pinned_columns=[f"config:{TASK_CONFIG_KEY}", "config:seed", f"summary:{SUMMARY_BEST_VAL}",
                        f"summary:{SUMMARY_ACCURACY}"],
    )
    return ws.Workspace(entity=entity, project=project, name=name, sections=sections,
                        settings=ws.WorkspaceSettings(x_axis=X_AXIS), runset_settings=runset)


def panel_keys(panel) -> dict[str, list[str]]:
    """The run keys a panel reads: {"history": [...], "summary": [...], "config": [...]}."""
    _, wr = _workspaces()
    keys = {"history": [], "summary": [], "config": []}
    for metric in [*getattr(panel, "y", []), *getattr(panel, "metrics", []), getattr(panel, "groupby", None)]:
        if isinstance(metric, str):
            keys["history"].append(metric)
        elif isinstance(metric, wr.SummaryMetric):
            keys["summary"].append(metric.name)
        elif isinstance(metric, wr.Config):
            keys["config"].append(metric.name)
    return keys


def describe(workspace) -> str:
    """One line per panel: section, title and the keys it reads (what --dry-run prints)."""
    runs = workspace.runset_settings
    lines = [f"{workspace.name} ({workspace.entity}/{workspace.project}), runs grouped by "
             f"{[g.name for g in runs.groupby]}, runs filter: {runs.filters or 'none'}"]
    for section in workspace.sections:
        for panel in section.panels:
            keys = {k: v for k, v in panel_keys(panel).items() if v}
            lines.append(f"  [{section.name}] {getattr(panel, 'title', None) or type(panel).__name__}: {keys}")
    return "\n".join(lines)


def check_reachable(base_url: str) -> None:
    """Fail in seconds, not minutes of retries, when the W&B server cannot be reached."""
    url = urlparse(base_url)
    host, port = url.hostname, url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as err:
        raise DashboardError(f"cannot reach the W&B server {base_url} ({err}); the workspace was not uploaded. "
                             "Run this with network access (and a W&B API key: `wandb login`), or pass "
                             "--dry-run to print the workspace.") from None


def upload(workspace, url: str | None = None):
    """Save the workspace: in place of the one at `url`, else as a new workspace. Returns the saved one."""
    import wandb

    check_reachable(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai"))
    try:
        wandb.Api()
    except wandb.errors.UsageError as err:
        raise DashboardError(f"no W&B API key ({err}); run `wandb login` or set WANDB_API_KEY") from None
    ws, _ = _workspaces()
    if url:
        existing = ws.Workspace.from_url(url)
        existing.sections, existing.settings = workspace.sections, workspace.settings
        existing.runset_settings = workspace.runset_settings
        return existing.save()
    return workspace.save()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m s5lra.dashboard", description=__doc__.split("\n")[0])
    parser.add_argument("project", metavar="ENTITY/PROJECT", help="the W&B project the runs log to")
    parser.add_argument("--tag", action="append", default=[], help="keep runs with this tag (repeatable)")
    parser.add_argument("--name", default=WORKSPACE_NAME, help="workspace name")
    parser.add_argument("--url", help="update this existing workspace instead of creating a new one")
    parser.add_argument("--dry-run", action="store_true", help="print the workspace, upload nothing")
    args = parser.parse_args(argv)
    entity, _, project = args.project.partition("/")
    if not entity or not project or "/" in project:
        parser.error(f"expected ENTITY/PROJECT, got {args.project!r}")
    try:
        workspace = build_workspace(entity, project, tags=args.tag, name=args.name)
        if args.dry_run:
            print(describe(workspace))
            return 0
        saved = upload(workspace, args.url)
    except DashboardError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"workspace saved: {saved.url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
