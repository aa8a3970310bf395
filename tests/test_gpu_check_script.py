"""experiments/gpu/check.sh: sections run independently within their limits, the report files, the real-run
summary; and the script itself on CPU (the env section fast, every section at tiny sizes behind `slow`)."""

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import REPO

GPU_DIR = REPO / "experiments" / "gpu"
sys.path.insert(0, str(GPU_DIR))  # check.py imports check_summary from beside it
_spec = importlib.util.spec_from_file_location("gpu_check", GPU_DIR / "check.py")
check = sys.modules["gpu_check"] = importlib.util.module_from_spec(_spec)  # dataclasses look their module up
_spec.loader.exec_module(check)


def python(code):
    return [sys.executable, "-c", code]


def run_section(tmp_path, section):
    return check.Running(section, tmp_path, dict(os.environ)).finish()


def test_a_section_records_success_failure_and_its_output(tmp_path):
    ok = run_section(tmp_path, check.Section("ok", python("print('{\"x\": 1}')"), 30, check.last_json_line))
    assert ok["status"] == "ok" and ok["result"] == {"x": 1} and ok["tail"][-1] == '{"x": 1}'
    bad = run_section(tmp_path, check.Section("bad", python("import sys; print('boom'); sys.exit(3)"), 30,
                                              check.last_json_line))
    assert bad["status"] == "failed: exit 3" and "boom" in bad["tail"]
    assert bad["parse_error"].startswith("StopIteration")  # no JSON line: recorded, not raised


def test_a_section_past_its_limit_is_stopped_with_all_its_processes(tmp_path):
    marker = tmp_path / "grandchild.pid"
    code = (f"import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', 'import time; "
            f"time.sleep(60)']); open({str(marker)!r}, 'w').write(str(p.pid)); time.sleep(60)")
    tic = time.time()
    record = run_section(tmp_path, check.Section("slow", python(code), 3))
    assert record["status"] == "timeout after 3 s" and time.time() - tic < 3 + check.GRACE_S + 5
    status = Path(f"/proc/{marker.read_text()}/status")  # the section's own child went too
    time.sleep(0.5)
    assert not status.exists() or "zombie" in status.read_text()  # dead (maybe not yet reaped by init)


def test_a_planned_stop_lets_the_process_finish_cleanly(tmp_path):
    """The real run: SIGTERM at stop_after; the training loop saves and exits 0, which is success."""
    code = ("import signal, sys, time\nsignal.signal(signal.SIGTERM, lambda *a: (print('saving'), sys.exit(0)))\n"
            "time.sleep(60)")
    record = run_section(tmp_path, check.Section("run", python(code), 20, stop_after=2))
    assert record["status"] == "ok" and record["seconds"] < 10 and "saving" in record["tail"]


def test_a_missing_script_is_skipped(tmp_path):
    record = run_section(tmp_path, check.Section("loop", ["x"], 5, needs=REPO / "experiments" / "nope.py"))
    assert record["status"] == "skipped: experiments/nope.py does not exist"


def test_sections_run_on_after_failures_and_the_report_is_written(tmp_path, monkeypatch):
    def fake_sections(mode, work, wanted):
        assert wanted == {"env", "pytest", "layer"}
        return [check.Section("env", python("import sys; sys.exit(1)"), 30),
                check.Section("pytest", python("import time; time.sleep(30)"), 1),
                check.Section("layer", python("print('12 passed, 3 deselected in 1.0s')"), 30, check.pytest_summary)]

    monkeypatch.setattr(check, "sections", fake_sections)
    assert check.main(["--sections", "env,pytest,layer", "--work", str(tmp_path / "work"), str(tmp_path / "out")]) == 0
    report = json.loads((tmp_path / "out" / "check.json").read_text())
    assert [(s["name"], s["status"]) for s in report["sections"]] == [
        ("env", "failed: exit 1"), ("pytest", "timeout after 1 s"), ("layer", "ok")]
    assert report["sections"][2]["result"]["passed"] == 12 and report["mode"] == "gpu"
    md = (tmp_path / "out" / "check.md").read_text()
    assert "| pytest | timeout after 1 s |" in md
    assert "==== env: failed: exit 1" in (tmp_path / "out" / "sections.log").read_text()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["check.json", "check.md", "sections.log"]


def test_unknown_section_is_an_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        check.main(["--sections", "env,gpu", str(tmp_path)])
    assert "unknown sections ['gpu']" in capsys.readouterr().err


def test_gpu_limits_fit_the_nine_and_a_half_minutes():
    """Every section at its limit, the real run at its shortest, its stop and the kill grace: under 570 s (the
    device tool's commands may run 600 s)."""
    mode = check.GPU
    limits = [check.section_limit(mode, n) for n in ("env", "pytest", "estimate", "loop_overhead")]
    limits += [check.section_limit(mode, "layer", s) for s in mode.layer_shapes]
    limits += [check.section_limit(mode, "train_step", t) for t in check.TASKS]
    worst = sum(limits) + check.GRACE_S * len(limits)
    assert worst + mode.run_s[0] + mode.run_stop_s < 570
    assert mode.budget_s + check.GRACE_S < 570  # the run takes what is left of the budget, no more


def test_run_summary_reads_the_curve_and_epoch_time(tmp_path):
    events = [dict(step=50, epoch=0, split="train", loss=2.0, accuracy=0.2, examples_per_s=1000.0),
              dict(step=100, epoch=0, split="train", loss=1.8, accuracy=0.3, examples_per_s=1200.0),
              dict(step=100, epoch=0, split="val", loss=1.7, accuracy=0.35, examples_per_s=5000.0),
              dict(step=100, epoch=0, split="test", loss=1.7, accuracy=0.33, examples_per_s=5000.0),
              dict(step=150, epoch=1, split="train", loss=1.6, accuracy=0.4, examples_per_s=1100.0)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    (tmp_path / "results.json").write_text(json.dumps(dict(status="preempted", epochs=1.5, steps=150,
                                                           wall_time_s=180.0, device_kind="cpu")))
    summary = check.run_summary(tmp_path, n_train=96_000)
    assert summary["status"] == "preempted" and summary["train_examples_per_s"] == 1100.0
    assert summary["train_s_per_epoch"] == pytest.approx(96_000 / 1100)
    assert summary["curve"] == [dict(step=100, epoch=0, val=0.35, test=0.33)]
    assert [t["accuracy"] for t in summary["train"]] == [0.2, 0.3, 0.4]
    from check_summary import markdown

    md = markdown(dict(mode="gpu", started="now", work_dir="w", total_seconds=200,
                       sections=[dict(name="run", status="ok", seconds=190, limit_s=210, result=summary)]))
    assert "| 100 | 0 | 0.3500 | 0.3300 |" in md and "= 87.3 s per epoch" in md


def check_sh(tmp_path, *args, timeout):
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS", "OUT")}
    proc = subprocess.run(["bash", str(GPU_DIR / "check.sh"), "--cpu-smoke", *args, "--work", str(tmp_path / "work"),
                           str(tmp_path / "out")], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return {s["name"]: s for s in json.loads((tmp_path / "out" / "check.json").read_text())["sections"]}


def test_check_sh_env_section_runs_the_real_self_check(tmp_path):
    """Through the shell wrapper, from another directory: versions, device and a fresh kernel self-check."""
    env = check_sh(tmp_path, "--sections", "env", timeout=300)["env"]
    assert env["status"] == "ok", env["tail"]
    result = env["result"]
    assert result["backend"] == "cpu" and result["versions"]["jax"]
    verdict = result["selfcheck"]
    assert verdict["scan"] == "pallas" and verdict["cause"] is None and verdict["cached"] is None
    assert max(verdict["errors"].values()) < 1e-5 and verdict["seconds"] > 0
    assert "Pallas self-check: **pallas**" in (tmp_path / "out" / "check.md").read_text()


@pytest.mark.slow
def test_check_sh_cpu_smoke_runs_every_section(tmp_path):
    sections = check_sh(tmp_path, timeout=2400)
    for name, section in sections.items():
        # loop_overhead.py is another script, slow on a loaded CPU: absent or late is tolerated, a failure is not
        tolerated = ("skipped", "timeout") if name == "loop_overhead" else ()
        assert section["status"] == "ok" or section["status"].startswith(tolerated), (name, section["tail"][-20:])
    assert sections["pytest"]["result"]["passed"] >= 2
    layer = sections["layer_listops"]["result"]
    assert {r["method"] for r in layer["rows"]} == set(check.CPU_SMOKE.layer_methods)
    assert {r["method"] for r in layer["scan_rows"]} == set(check.CPU_SMOKE.layer_methods) - {"official"}
    for task in check.TASKS:
        rows = sections[f"train_step_{task}"]["result"]["rows"]
        assert {r["variant"] for r in rows} >= {"auto", "official"} and all(r["step_ms"] > 0 for r in rows)
    assert {r["variant"] for r in sections["train_step_pathx"]["result"]["rows"]} == {"remat", "auto", "official"}
    estimates = sections["estimate"]["result"]
    assert sorted(estimates) == sorted(check.TASKS), sections["estimate"]["tail"][-20:]
    assert all(e["step_ms"] > 0 and e["schedule_s"] > 0 and e["fits"] for e in estimates.values())
    run = sections["run"]["result"]
    assert run["status"] == "preempted" and run["curve"], run
    assert run["train_s_per_epoch"] > 0 and all(0 <= c["val"] <= 1 for c in run["curve"])
    md = (tmp_path / "out" / "check.md").read_text()
    for heading in ("## Environment", "## Cost estimate", "## One bidirectional S5 layer", "## Training step",
                    "## Real run"):
        assert heading in md
