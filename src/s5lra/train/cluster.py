"""Before a SLURM sweep submits anything (hydra/launcher=slurm): what it asks for must exist, and submitit's
status polls must not repeat the same warning.

- Resources: `sinfo` says what the partition's nodes have (GPUs, CPUs, memory); a request no node can meet
  ends the sweep with one line that says what was asked and which override changes it (instead of sbatch's
  `Invalid generic resource (gres) specification` inside a submitit traceback).
- Status polls: submitit asks `sacct` for the jobs' states, which fails on clusters without job accounting
  (`AccountingStorageType=accounting_storage/none`, common on small clusters). There the polls are skipped
  (one line says so; a job's end is seen from its result file, as before); elsewhere a failing poll's warning
  is shown once, not on every poll.

Hydra calls `SlurmPreflight.on_multirun_start` in the submitting process (configs/hydra/callbacks/); it does
nothing under any other launcher.
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from dataclasses import dataclass

from hydra.experimental.callback import Callback

SLURM_LAUNCHER = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
SACCT_ERROR = "Bypassing sacct error"


@dataclass
class Node:
    """What one node of a partition offers (sinfo)."""

    cpus: int
    mem_mb: int
    gpus: int


def parse_gpus(gres: str) -> int:
    """GPUs in a sinfo GRES field: `gpu:4`, `gpu:a100:4(S:0-1)`, `gpu:2,shard:8` -> 4, 4, 2; `(null)` -> 0."""
    total = 0
    for item in gres.split(","):
        fields = re.sub(r"\(.*?\)", "", item).split(":")
        if fields[0] == "gpu":
            total += int(fields[-1]) if len(fields) > 1 and fields[-1].isdigit() else 1
    return total


def partition_nodes(partition: str | None) -> tuple[str, list[Node]] | None:
    """(partition name, its nodes) from sinfo; the default partition when `partition` is None; None when
    sinfo is not there or does not answer (then sbatch will say what is wrong)."""
    cmd = ["sinfo", "--noheader", "--format=%P|%c|%m|%G"]
    try:
        out = subprocess.run(cmd + ([f"--partition={partition}"] if partition else []), capture_output=True,
                             text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    rows = [line.split("|") for line in out.stdout.splitlines() if line.count("|") == 3]
    if partition is None:
        rows = [r for r in rows if r[0].endswith("*")]  # sinfo marks the default partition with *
    name = partition or (rows[0][0].rstrip("*") if rows else "(default)")
    nodes = [Node(int(re.sub(r"\D", "", cpus) or 0), int(re.sub(r"\D", "", mem) or 0), parse_gpus(gres))
             for _, cpus, mem, gres in rows]
    return name, nodes


def resource_problems(launcher, nodes: list[Node]) -> list[str]:
    """What no node of the partition can give, each with the override that fixes it."""
    if not nodes:
        return ["it does not exist here or has no nodes (`sinfo` lists the partitions; set "
                "hydra.launcher.partition=NAME)"]
    problems = []
    gpus, tasks = launcher.get("gpus_per_node") or 0, launcher.get("tasks_per_node") or 1
    most_gpus = max(n.gpus for n in nodes)
    if gpus > most_gpus:
        fix = ("hydra.launcher.gpus_per_node=0 hydra.launcher.tasks_per_node=1" if most_gpus == 0
               else f"hydra.launcher.gpus_per_node={most_gpus}")
        problems.append(f"hydra.launcher.gpus_per_node={gpus} but its nodes have "
                        f"{'no GPUs' if most_gpus == 0 else f'at most {most_gpus} GPUs'} (set {fix}, or pick a "
                        f"partition with GPUs: hydra.launcher.partition=NAME)")
    cpus, most_cpus = (launcher.get("cpus_per_task") or 1) * tasks, max(n.cpus for n in nodes)
    if cpus > most_cpus:
        problems.append(f"hydra.launcher.cpus_per_task={launcher.get('cpus_per_task')} x tasks_per_node={tasks} "
                        f"but its nodes have at most {most_cpus} CPUs (set hydra.launcher.cpus_per_task="
                        f"{max(most_cpus // tasks, 1)})")
    mem_gb, most_mb = launcher.get("mem_gb"), max(n.mem_mb for n in nodes)
    if mem_gb and mem_gb * 1024 > most_mb:
        problems.append(f"hydra.launcher.mem_gb={mem_gb} but its nodes have at most {most_mb // 1024} GB "
                        f"(set hydra.launcher.mem_gb={most_mb // 1024})")
    return problems


def accounting_off() -> bool:
    """True when the cluster keeps no job accounting (sacct cannot answer)."""
    try:
        out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return bool(re.search(r"^AccountingStorageType\s*=\s*accounting_storage/none", out.stdout, re.M))


class OnceFilter(logging.Filter):
    """Lets the first sacct failure warning through, with what it means; drops the repeats."""

    def __init__(self):
        super().__init__()
        self.seen = False

    def filter(self, record: logging.LogRecord) -> bool:
        if SACCT_ERROR not in record.getMessage():
            return True
        if self.seen:
            return False
        self.seen = True
        record.msg = f"{record.getMessage()} (shown once; later sacct failures are not shown)"
        record.args = ()
        return True


def quiet_sacct() -> None:
    """Skip the status polls where sacct cannot work; show a failing poll once where it can."""
    import submitit.slurm.slurm as submitit_slurm

    if accounting_off():
        # With no command, submitit skips the poll; a job's end is seen from its result file.
        submitit_slurm.SlurmJob.watcher._make_command = lambda: None
        print("slurm: this cluster keeps no job accounting (AccountingStorageType=accounting_storage/none): "
              "submitit's sacct status polls are skipped; each job's end is read from its result file",
              file=sys.stderr, flush=True)
        return
    submitit_logger = logging.getLogger("submitit")
    if not any(isinstance(f, OnceFilter) for f in submitit_logger.filters):
        submitit_logger.addFilter(OnceFilter())


class SlurmPreflight(Callback):
    """Check the request against the partition, then quiet sacct; only under hydra/launcher=slurm."""

    def on_multirun_start(self, config, **kwargs) -> None:
        launcher = config.hydra.launcher
        if launcher.get("_target_") != SLURM_LAUNCHER:
            return
        found = partition_nodes(launcher.get("partition"))
        if found is not None:
            problems = resource_problems(launcher, found[1])
            if problems:
                print(f"error: partition {found[0]!r} cannot run these jobs: {'; '.join(problems)}",
                      file=sys.stderr, flush=True)
                raise SystemExit(1)
        quiet_sacct()
