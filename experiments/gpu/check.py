"""Every GPU figure in one call; run it through check.sh, which sets up the Python environment first.

    experiments/gpu/check.sh [OUT_DIR]                       # GPU machine: under 9.5 minutes on an H200
    experiments/gpu/check.sh --cpu-smoke [OUT_DIR]           # the same sections at tiny sizes on CPU
    experiments/gpu/check.sh --sections env,pytest [OUT_DIR] # some sections only

Sections: env (versions, device, the Pallas kernel's self-check verdict and its time), pytest (the Pallas
tests compiled for the device), estimate (`run_train.py trainer.estimate=true` for all six paper configs at their
paper batch sizes, one process: ms per step, epoch and full-schedule time, peak memory against the device's,
SLURM limits; without LRA data, random batches of the release's shapes), layer (experiments/bench/layer.py per paper shape, all scan methods, the scan
alone against copy bandwidth), train_step (experiments/bench/train_step.py per paper configuration at the paper's
batch), loop_overhead (experiments/bench/loop_overhead.py on ListOps), run (ListOps generated at the paper's size
in the background while the others run, then `lra/listops` trained until the time budget is spent and stopped
with SIGTERM: seconds per epoch and the accuracy curve).

Each section is a subprocess with its own time limit: a failing, missing or timed-out section is recorded and the
others still run. OUT_DIR (default $OUT, else outputs/gpu-check/<time>) receives check.json (every section's
status, seconds, command and parsed results), check.md (the summary) and sections.log (each section's output
tail), rewritten after every section; the sections' own files stay in the work folder that check.json names.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from statistics import median
from typing import Callable

from s5lra.atomic import write_text

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "experiments" / "bench"
TASKS = ("listops", "text", "retrieval", "image", "pathfinder", "pathx")
LAYER_METHODS = ("official", "associative", "pallas", "sequential", "chunked")
GRACE_S = 5  # a section past its limit: from SIGTERM to SIGKILL
TAIL_LINES = 60


@dataclasses.dataclass
class Mode:
    """Sizes and time limits (seconds) of one kind of check. GPU limits add up to under 9.5 minutes."""

    name: str
    platform: str  # JAX_PLATFORMS for every section
    budget_s: float  # the whole check; the real run gets what the sections before it left
    limits: dict  # section (or section/part) -> seconds
    pytest_k: str
    estimate_args: list  # run_train.py overrides of the estimate section (besides the experiments)
    layer_args: list
    layer_methods: tuple
    layer_shapes: tuple
    train_args: list  # extra train_step.py options (batch, steps)
    train_overrides: list  # and Hydra overrides
    loop_args: list  # loop_overhead.py options
    generate_args: list  # `s5lra-data generate listops` sizes
    n_train: int  # the generated training split
    max_len: int
    run_args: list  # extra run_train.py overrides
    run_s: tuple  # (shortest, longest) time from the run's start to its SIGTERM
    run_stop_s: float  # time allowed from SIGTERM to exit (the loop saves at its next log boundary)


GPU = Mode(
    "gpu", "cuda", budget_s=555,
    limits={"env": 45, "pytest": 40, "layer": 14, "layer/pathx": 30, "train_step": 16, "train_step/pathx": 24,
            "train_step/image": 22, "loop_overhead": 40, "estimate": 90, "data": 400},
    pytest_k="pallas", estimate_args=["trainer.estimate_steps=5"], layer_args=["--repeats", "3"], layer_methods=LAYER_METHODS, layer_shapes=TASKS,
    train_args=["--steps", "5"], train_overrides=[], loop_args=["--configs", "listops"],
    generate_args=[], n_train=96_000, max_len=2048, run_args=[], run_s=(30, 180), run_stop_s=30,
)
CPU_SMOKE = Mode(
    "cpu-smoke", "cpu", budget_s=900,  # limits with room for a CPU shared with other jobs
    limits={"env": 120, "pytest": 120, "layer": 180, "train_step": 150, "train_step/pathx": 200,
            "train_step/image": 200, "loop_overhead": 300, "estimate": 300, "data": 180},
    pytest_k="pallas and (lower or chunk_edges)",
    estimate_args=["trainer.estimate_steps=1", "model.n_layers=1", "model.d_model=16", "model.ssm.state_size=8",
                   "model.ssm.blocks=1", "trainer.batch_size=2"], layer_args=["--batch", "1", "--repeats", "1"],
    layer_methods=("official", "sequential"),  # fast to compile; pallas (interpreted) is in the pytest section
    layer_shapes=("listops",),
    train_args=["--batch", "2", "--seq-len", "64", "--steps", "1"],
    train_overrides=["model.n_layers=1", "model.d_model=16", "model.ssm.state_size=8", "model.ssm.blocks=1"],
    loop_args=["--configs", "tiny", "--steps", "50"],
    generate_args=["--n-train", "400", "--n-val", "50", "--n-test", "50", "--max-depth", "4", "--max-args", "4",
                   "--min-length", "20", "--max-length", "120"],
    n_train=400, max_len=128,
    run_args=["dataset.max_len=128", "model.n_layers=1", "model.d_model=16", "trainer.batch_size=8",
              "trainer.log_every=10", "trainer.epochs=100000"],  # still training at the SIGTERM, as on a GPU
    run_s=(120, 120), run_stop_s=90,
)


@dataclasses.dataclass
class Section:
    name: str
    command: list
    limit: float  # seconds, then SIGTERM to its process group (SIGKILL GRACE_S later)
    parse: Callable[[str], dict] | None = None  # the section's results, from its log text
    stop_after: float | None = None  # SIGTERM at this time is the plan, not a failure (the real run)
    needs: Path | None = None  # a script that must exist, else the section is skipped
    background: bool = False


def section_limit(mode: Mode, name: str, part: str | None = None) -> float:
    return mode.limits.get(f"{name}/{part}", mode.limits[name])


def _terminate(proc: subprocess.Popen) -> None:
    """Stop a section's whole process group: SIGTERM, then SIGKILL after GRACE_S."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(GRACE_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


class Running:
    """A started section: its process, log and clock."""

    alive: set = set()  # started and not finished: stopped if the check itself is stopped

    def __init__(self, section: Section, work: Path, env: dict):
        self.section = section
        self.log_path = work / f"{section.name}.log"
        self.started = time.time()
        self.status = None
        self.proc = None
        self.ended = None  # when the process exited (a background section's may be long before finish())
        if section.needs is not None and not section.needs.exists():
            self.status = f"skipped: {section.needs.relative_to(REPO)} does not exist"
            return
        self._log = open(self.log_path, "w")
        self._log.write("$ " + shlex.join(map(str, section.command)) + "\n")
        self._log.flush()
        nice = (lambda: os.nice(19)) if section.background else None  # the benchmarks keep the CPU
        self.proc = subprocess.Popen(list(map(str, section.command)), cwd=REPO, env=env, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=nice)
        Running.alive.add(self)
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self):
        self.proc.wait()
        self.ended = time.time()

    def finish(self) -> dict:
        """Wait for the section (within its limit) and return its record."""
        section, proc = self.section, self.proc
        if proc is not None:
            if section.stop_after is not None:
                try:
                    proc.wait(max(section.stop_after - (time.time() - self.started), 0))
                except subprocess.TimeoutExpired:
                    proc.send_signal(signal.SIGTERM)  # the training loop saves and exits
            try:
                proc.wait(max(section.limit - (time.time() - self.started), 0))
                self.status = "ok" if proc.returncode == 0 else f"failed: exit {proc.returncode}"
            except subprocess.TimeoutExpired:
                _terminate(proc)
                self.status = f"timeout after {section.limit:.0f} s"
            self._log.close()
            Running.alive.discard(self)
        seconds = (self.ended or time.time()) - self.started
        record = dict(name=section.name, status=self.status, seconds=round(seconds, 1), limit_s=section.limit,
                      command=shlex.join(map(str, section.command)))
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        record["tail"] = text.splitlines()[-TAIL_LINES:]
        if section.parse is not None and proc is not None:
            try:
                record["result"] = section.parse(text)
            except Exception as err:  # a section's partial output must not cost the whole check
                record["parse_error"] = f"{type(err).__name__}: {err}"
        return record


def read_json(path: Path):
    return json.loads(Path(path).read_text())


def last_json_line(text: str) -> dict:
    return json.loads(next(line for line in reversed(text.splitlines()) if line.startswith("{")))


def pytest_summary(text: str) -> dict:
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)", text)}
    return dict(counts, summary=next((l.strip("= ") for l in reversed(text.splitlines()) if " in " in l), ""))


def run_summary(run_dir: Path, n_train: int) -> dict:
    """The real run: status, epochs, seconds per epoch and the accuracy curve, from its own files."""
    results = read_json(run_dir / "results.json")
    events = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]
    train = [e for e in events if e["split"] == "train"]
    rate = median(e["examples_per_s"] for e in train) if train else None
    curve = {}
    for e in events:
        if e["split"] in ("val", "test"):
            curve.setdefault((e["step"], e["epoch"]), {})[e["split"]] = e["accuracy"]
    keep = ("status", "epochs", "steps", "wall_time_s", "best_val_accuracy", "test_accuracy", "final_test_accuracy",
            "majority_baseline", "n_params", "device_kind")
    return dict({k: results.get(k) for k in keep}, train_examples_per_s=rate,
                train_s_per_epoch=n_train / rate if rate else None,
                curve=[dict(step=s, epoch=ep, val=acc.get("val"), test=acc.get("test"))
                       for (s, ep), acc in sorted(curve.items())],
                train=[{k: e.get(k) for k in ("step", "epoch", "loss", "accuracy")} for e in train])


def estimate_summary(sweep_dir: Path) -> dict:
    """The estimate section: per task, the figures of its estimate.json (the tasks estimated before a timeout)."""
    out = {}
    for path in sorted(sweep_dir.glob("*/estimate.json")):
        e = read_json(path)
        mem, slurm, remat = e["memory"], e.get("slurm") or {}, e.get("remat") or {}
        gib = lambda n: n / 2**30 if n else None  # noqa: E731
        out[e["task"]] = dict(batch=e["batch_size"], data=e["data"], compile_s=e["compile_s"],
                              step_ms=e["step_s"] and 1e3 * e["step_s"], examples_per_s=e["examples_per_s"],
                              steps_per_epoch=e["steps_per_epoch"], epoch_s=e["epoch_s"], epochs=e["epochs"],
                              schedule_s=e["schedule_s"], peak_gib=gib(mem["peak_bytes"]),
                              capacity_gib=gib(mem["capacity_bytes"]), fits=mem["fits"],
                              remat_peak_gib=gib(remat.get("peak_bytes")), timed_variant=e["timed_variant"],
                              timeout_min=slurm.get("timeout_min_one_allocation"),
                              checkpoint_mib=e["checkpoint_bytes"] / 2**20)
    return out


def probe() -> None:
    """The `env` section's body: versions and device, then the kernel self-check run afresh; one JSON line."""
    import importlib.metadata as md

    import jax

    from s5lra.ssm import selfcheck

    versions = {}
    for name in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "hydra-core", "omegaconf", "wandb"):
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = None
    device = jax.devices()[0]
    stats = device.memory_stats() or {}
    smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                         capture_output=True, text=True) if _which("nvidia-smi") else None
    verdict = selfcheck.check(force=True)
    print(json.dumps(dict(python=platform.python_version(), versions=versions, backend=jax.default_backend(),
                          device_kind=device.device_kind, device_count=jax.device_count(), cpu_count=os.cpu_count(),
                          memory_limit_gb=stats.get("bytes_limit", 0) / 1e9 or None,
                          nvidia_smi=smi.stdout.strip() if smi else None,
                          selfcheck=dataclasses.asdict(verdict))))


def _which(program: str) -> bool:
    return any(Path(p, program).exists() for p in os.environ.get("PATH", "").split(os.pathsep))


def sections(mode: Mode, work: Path, wanted: set) -> list[Section]:
    py = sys.executable
    data, run_dir = work / "data", work / "run"
    out = []
    if "run" in wanted:
        workers = str(max(1, (os.cpu_count() or 1) - 4))
        cli = f"{shlex.quote(py)} -m s5lra.data.cli"
        command = (f"{cli} generate listops --root {shlex.quote(str(data))} --workers {workers} "
                   f"{shlex.join(mode.generate_args)} && {cli} prepare listops --root {shlex.quote(str(data))} "
                   f"--max-len {mode.max_len} --workers {workers}")
        out.append(Section("data", ["bash", "-c", command], section_limit(mode, "data"), background=True))
    if "env" in wanted:
        out.append(Section("env", [py, Path(__file__), "--probe"], section_limit(mode, "env"), last_json_line))
    if "pytest" in wanted:
        out.append(Section("pytest", [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_ssm.py", "-k",
                                      mode.pytest_k], section_limit(mode, "pytest"), pytest_summary))
    if "estimate" in wanted:
        sweep = work / "estimate"
        experiments = ",".join(f"lra/{t}" for t in TASKS)  # cheapest first: a timeout keeps the ones done
        out.append(Section("estimate", [py, "run_train.py", "-m", f"experiment={experiments}", "trainer.estimate=true",
                                        "logger=none", "trainer.progress=false", f"paths.data_dir={work / 'no-data'}",
                                        f"hydra.sweep.dir={sweep}", *mode.estimate_args],
                           section_limit(mode, "estimate"), lambda _: estimate_summary(sweep)))
    if "layer" in wanted:
        for shape in mode.layer_shapes:
            path = work / f"layer_{shape}.json"
            out.append(Section(f"layer_{shape}", [py, BENCH / "layer.py", "--shapes", shape, "--scan", "--methods",
                                                  *mode.layer_methods, *mode.layer_args, "--out", path],
                               section_limit(mode, "layer", shape), lambda _, path=path: read_json(path)))
    if "train_step" in wanted:
        for task in TASKS:
            path = work / f"train_step_{task}.json"
            # Lowest memory first: peak_bytes_in_use only grows within a process, so each row's peak is its own.
            variants = (["remat"] if task in ("pathx", "image") else []) + ["auto", "official"]
            command = [py, BENCH / "train_step.py", f"experiment=lra/{task}", *mode.train_overrides,
                       "--variants", *variants, *mode.train_args, "--out", path]
            out.append(Section(f"train_step_{task}", command,
                               section_limit(mode, "train_step", task), lambda _, path=path: read_json(path)))
    if "loop_overhead" in wanted:
        path, script = work / "loop_overhead.json", BENCH / "loop_overhead.py"
        out.append(Section("loop_overhead", [py, script, *mode.loop_args, "--data-dir", data, "--json", path],
                           section_limit(mode, "loop_overhead"), lambda _: read_json(path), needs=script))
    if "run" in wanted:
        out.append(Section("run", [py, "run_train.py", "experiment=lra/listops", f"paths.data_dir={data}",
                                   "logger=none", "trainer.progress=false", f"hydra.run.dir={run_dir}",
                                   *mode.run_args],
                           limit=0, parse=lambda _: run_summary(run_dir, mode.n_train),
                           stop_after=0))  # limit and stop_after: from the budget left when it starts (main)
    return out


SECTIONS = ("env", "pytest", "estimate", "layer", "train_step", "loop_overhead", "run")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", nargs="?", help="output folder (default: $OUT, else outputs/gpu-check/<time>)")
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny sizes on CPU, so the script cannot rot")
    ap.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}")
    ap.add_argument("--work", help="folder for the sections' own files (default: a new temporary folder)")
    ap.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.probe:
        probe()
        return 0
    wanted = set(args.sections.split(","))
    if wanted - set(SECTIONS):
        ap.error(f"unknown sections {sorted(wanted - set(SECTIONS))}; expected some of {SECTIONS}")
    mode = CPU_SMOKE if args.cpu_smoke else GPU
    out = Path(args.out or os.environ.get("OUT") or REPO / "outputs" / "gpu-check" / time.strftime("%Y%m%d_%H%M%S"))
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work or tempfile.mkdtemp(prefix="s5lra-gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "JAX_PLATFORMS": mode.platform, "PYTHONUNBUFFERED": "1", "WANDB_MODE": "disabled",
           "S5LRA_CACHE_DIR": str(work / "cache"),  # a fresh self-check, reused by every later section
           "S5LRA_SELFCHECK_TIMEOUT": str(section_limit(mode, "env") - 10)}
    # Sections run in their own process groups (so a timeout stops all of a section's processes): if the check
    # is stopped, stop them too, rather than leave them running on the machine.
    def stop(signum, frame):
        for running in list(Running.alive):
            _terminate(running.proc)
        sys.exit(128 + signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, stop)
    started = time.time()
    report = dict(mode=mode.name, started=time.strftime("%Y-%m-%d %H:%M:%S %Z"), work_dir=str(work),
                  python=sys.executable, sections=[])
    todo = sections(mode, work, wanted)
    background = {s.name: Running(s, work, env) for s in todo if s.background}
    for section in todo:
        if section.background:
            continue
        if section.name == "run":  # the data first, then whatever time the budget has left
            report["sections"].append(background.pop("data").finish())
            if report["sections"][-1]["status"] != "ok":
                report["sections"].append(dict(name="run", status="skipped: no data", seconds=0))
                continue
            left = mode.budget_s - (time.time() - started) - mode.run_stop_s
            section.stop_after = min(max(left, mode.run_s[0]), mode.run_s[1])
            section.limit = section.stop_after + mode.run_stop_s
        print(f"[{time.time() - started:6.0f} s] {section.name} (limit {section.limit:.0f} s)", flush=True)
        report["sections"].append(Running(section, work, env).finish())
        print(f"[{time.time() - started:6.0f} s] {section.name}: {report['sections'][-1]['status']}", flush=True)
        write_outputs(out, report, time.time() - started)
    for running in background.values():  # nothing waited for it: stop it
        report["sections"].append(running.finish())
    write_outputs(out, report, time.time() - started)
    print(f"wrote {out / 'check.json'} and {out / 'check.md'} in {time.time() - started:.0f} s")
    return 0


def write_outputs(out: Path, report: dict, seconds: float) -> None:
    from check_summary import markdown  # beside this file

    report["total_seconds"] = round(seconds, 1)
    for name, text in (("check.json", json.dumps(report, indent=1)), ("check.md", markdown(report)),
                       ("sections.log", "\n".join(f"==== {s['name']}: {s['status']}\n" + "\n".join(s.get("tail", []))
                                                  for s in report["sections"]))):
        write_text(out / name, text + "\n")


if __name__ == "__main__":
    sys.exit(main())
