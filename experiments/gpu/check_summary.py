"""check.md: the GPU check's report (check.json) as Markdown tables, one per section that produced results."""

from __future__ import annotations

import json


def _table(header: list, rows: list) -> list:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def _num(x, spec=".1f") -> str:
    return "-" if x is None else format(x, spec)


def _duration(seconds) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min" if seconds < 7200 else \
        f"{seconds / 3600:.1f} h"


def _results(report: dict, prefix: str) -> list:
    return [s["result"] for s in report["sections"] if s["name"].startswith(prefix) and "result" in s]


def markdown(report: dict) -> str:
    lines = [f"# GPU check ({report['mode']}, {report['started']})", "",
             f"Total {report.get('total_seconds', 0):.0f} s; work folder `{report['work_dir']}`.", ""]
    lines += _table(["section", "status", "seconds", "limit s"],
                    [[s["name"], s["status"], s["seconds"], _num(s.get("limit_s"), ".0f")] for s in report["sections"]])
    for env in _results(report, "env"):
        check = env["selfcheck"]
        lines += ["", "## Environment", "",
                  f"JAX {env['versions']['jax']} (jaxlib {env['versions']['jaxlib']}), Python {env['python']}, "
                  f"{env['device_count']} × {env['device_kind']} ({env['backend']}), "
                  f"memory limit {_num(env['memory_limit_gb'])} GB" + (f"; `{env['nvidia_smi']}`" if env["nvidia_smi"]
                                                                         else ""), "",
                  f"Pallas self-check: **{check['scan']}** in {check['seconds']:.1f} s"
                  + (f" — {check['cause']}" if check["cause"] else "")
                  + (f"; worst relative error {max(check['errors'].values()):.1e}" if check.get("errors") else "")]
    for tests in _results(report, "pytest"):
        lines += ["", "## Pallas tests on the device", "", f"`{tests['summary']}`"]
    for estimates in _results(report, "estimate"):
        lines += ["", "## Cost estimate of the paper configs (`trainer.estimate=true`, paper batch sizes)", ""]
        lines += _table(["task", "B", "data", "compile s", "step ms", "ex/s", "steps/epoch", "epoch", "schedule",
                         "peak GiB", "device GiB", "fits", "remat GiB", "SLURM timeout_min", "ckpt MiB"],
                        [[task, e["batch"], e["data"], _num(e["compile_s"]), _num(e["step_ms"]),
                          _num(e["examples_per_s"]), e["steps_per_epoch"], _duration(e["epoch_s"]),
                          f"{_duration(e['schedule_s'])} ({e['epochs']} epochs)", _num(e["peak_gib"], ".2f"),
                          _num(e["capacity_gib"], ".1f"), "yes" if e["fits"] else "**no**",
                          _num(e["remat_peak_gib"], ".2f"), e["timeout_min"] or "-", _num(e["checkpoint_mib"])]
                         for task, e in estimates.items()])
    layers = _results(report, "layer_")
    if layers:
        lines += ["", "## One bidirectional S5 layer (forward + backward)", ""]
        lines += _table(["shape", "B", "L", "H", "P", "method", "fwd ms", "f+b ms", "compile s", "vs official"],
                        [[r["shape"], r["batch"], r["L"], r["H"], r["P"], r["method"], _num(r["fwd_ms"]),
                          _num(r["fwd_bwd_ms"]), _num(r["compile_s"], ".2f"),
                          _num(r["speedup_vs_official"], ".2f") + "×" if r["speedup_vs_official"] else "-"]
                         for layer in layers for r in layer["rows"]])
        scans = [(r, layer) for layer in layers for r in layer["scan_rows"]]
        if scans:
            lines += ["", "The recurrence alone, one direction (share of the measured copy bandwidth)", ""]
            lines += _table(["shape", "method", "fwd ms", "f+b ms", "f+b GB/s", "copy GB/s", "f+b share"],
                            [[r["shape"], r["method"], _num(r["fwd_ms"], ".2f"), _num(r["fwd_bwd_ms"], ".2f"),
                              _num(r["fwd_bwd_gbps"]), _num(r["copy_gbps"]), f"{r['fwd_bwd_of_copy']:.0%}"]
                             for r, _ in scans])
    steps = _results(report, "train_step_")
    if steps:
        lines += ["", "## Training step (paper configuration and batch; `official` = scan=associative)", ""]
        lines += _table(["task", "variant", "B", "L", "compile s", "step ms", "ex/s", "peak GB", "temp GB", "vs off."],
                        [[r["task"], r["variant"], r["batch"], r["L"], _num(r["compile_s"]), _num(r["step_ms"]),
                          _num(r["examples_per_s"]), _num(r["peak_mb"] and r["peak_mb"] / 1024, ".2f"),
                          _num(r["temp_mb"] / 1024, ".2f"),
                          _num(r["speedup_vs_official"], ".2f") + "×" if r["speedup_vs_official"] else "-"]
                         for step in steps for r in step["rows"]])
    for loop in _results(report, "loop_overhead"):
        lines += ["", "## Loop overhead (real loop against the bare step)", "", "```json",
                  json.dumps(loop, indent=1), "```"]
    for run in _results(report, "run"):
        size = "tiny data, CPU smoke" if report["mode"] == "cpu-smoke" else f"paper-size data, {run['device_kind']}"
        lines += ["", f"## Real run: lra/listops ({size})", "",
                  f"Status {run['status']}, {_num(run['epochs'], '.2f')} epochs, {run['steps']} steps in "
                  f"{_num(run['wall_time_s'], '.0f')} s (compilation and data loading included); training "
                  f"{_num(run['train_examples_per_s'], '.0f')} examples/s = {_num(run['train_s_per_epoch'])} s per "
                  f"epoch without evaluation. Best val {_num(run['best_val_accuracy'], '.4f')}, test there "
                  f"{_num(run['test_accuracy'], '.4f')} (majority baseline {_num(run['majority_baseline'], '.4f')}).",
                  ""]
        lines += _table(["step", "epoch", "val acc", "test acc"],
                        [[c["step"], c["epoch"], _num(c["val"], ".4f"), _num(c["test"], ".4f")] for c in run["curve"]])
        if run["train"]:
            lines += ["", "Training (logged windows): " + ", ".join(
                f"step {t['step']}: {t['accuracy']:.3f}" for t in run["train"])]
    return "\n".join(lines)
