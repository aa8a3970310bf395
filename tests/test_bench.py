"""The benchmark scripts run end to end at tiny sizes; the epoch floor reproduces the arithmetic of
docs/performance.md, section 2 "The GPU floor"."""

import json
import sys

import numpy as np
import pytest
from PIL import Image

from helpers import REPO

sys.path.insert(0, str(REPO / "experiments" / "bench"))
import epoch_floor  # noqa: E402
import layer  # noqa: E402
import official_step  # noqa: E402
import train_step  # noqa: E402


def test_epoch_floor_matches_the_reference_path_x_figure():
    row = epoch_floor.floor("pathx", bandwidth_gbps=3000)
    # docs/performance.md §2 "The GPU floor": B·L·(88·P'·D + 28·H) bytes per layer
    # ≈ 27 ms per Path-X step at 3.0 TB/s
    assert row["step_gb"] == pytest.approx(32 * 16384 * 6 * (88 * 128 * 2 + 28 * 128) / 1e9)
    assert 26 < row["step_ms"] < 29
    steps = (160_000 + 0.4 * 40_000) / 32
    assert row["epoch_min"] * 60 == pytest.approx(steps * row["step_ms"] / 1e3)
    assert row["run_h"] == pytest.approx(row["epoch_min"] * 75 / 60)


def test_epoch_floor_counts_both_retrieval_documents():
    row = epoch_floor.floor("retrieval", 3000)  # 6 layers, H 128, P 256 -> P' 128, bidirectional; 2 documents
    assert (row["layers"], row["H"], row["P_states"], row["directions"]) == (6, 128, 128, 2)
    assert row["step_gb"] == pytest.approx(32 * 2 * 4000 * 6 * (88 * 128 * 2 + 28 * 128) / 1e9)


def test_layer_bench_rows_and_tables(capsys):
    rows = layer.bench_shape("tiny", 1, 64, 8, 8, 2, ["official", "sequential"], repeats=1)
    assert [r["method"] for r in rows] == ["official", "sequential"]
    assert rows[0]["speedup_vs_official"] == 1.0 and rows[1]["speedup_vs_official"] > 0
    scan = layer.bench_scan("tiny", 1, 64, 4, ["sequential", "associative"], repeats=1)
    for r in scan:
        assert r["fwd_bwd_gbps"] == pytest.approx(40 * 64 * 4 / (r["fwd_bwd_ms"] / 1e3) / 1e9)
        assert r["fwd_bwd_of_copy"] == pytest.approx(r["fwd_bwd_gbps"] / r["copy_gbps"])
    layer.print_table(rows, layer.LAYER_COLUMNS)
    layer.print_scan_table(scan)
    out = capsys.readouterr().out
    assert "official" in out and "1.00x" in out and "copy bandwidth" in out


def test_layer_bench_cli_writes_json(tmp_path, monkeypatch):
    monkeypatch.setattr(layer, "PAPER_SHAPES", {"listops": (1, 32, 8, 8, 2)})
    out = tmp_path / "layer.json"
    monkeypatch.setattr(sys, "argv", ["layer.py", "--shapes", "listops", "--scan", "--repeats", "1",
                                      "--methods", "official", "sequential", "--out", str(out)])
    layer.main()
    data = json.loads(out.read_text())
    assert data["backend"] == "cpu"
    assert [r["method"] for r in data["rows"]] == ["official", "sequential"]
    assert [r["method"] for r in data["scan_rows"]] == ["sequential"]


def test_train_step_and_epoch_floor_clis(tmp_path, monkeypatch, capsys):
    out = tmp_path / "step.json"
    monkeypatch.setattr(sys, "argv", ["train_step.py", "experiment=lra/listops", "--batch", "4", "--seq-len", "32",
                                      "--steps", "1", "--variants", "auto", "official", "--out", str(out)])
    train_step.main()
    rows = json.loads(out.read_text())["rows"]
    assert [r["variant"] for r in rows] == ["auto", "official"]
    assert rows[1]["speedup_vs_official"] == 1.0 and rows[0]["step_ms"] > 0
    out = tmp_path / "floor.json"
    monkeypatch.setattr(sys, "argv", ["epoch_floor.py", "--out", str(out)])
    epoch_floor.main()
    floor = json.loads(out.read_text())
    assert floor["estimate"] and [r["task"] for r in floor["rows"]] == list(epoch_floor.TASKS)
    printed = capsys.readouterr().out
    assert "1.00x" in printed and "pathx" in printed and "min/epoch" in printed


def test_official_step_needs_a_clone_and_feeds_what_the_official_loaders_feed(tmp_path):
    with pytest.raises(SystemExit, match=f"{tmp_path}: not a clone of lindermanlab/S5"):
        official_step.import_official(tmp_path)
    rng = np.random.default_rng(0)
    (x, lengths), labels, steps = official_step.official_batch("retrieval", 3, 16, rng)
    assert x.shape == (6, 16, 98) and lengths.shape == (6,) and labels.shape == (3,) and steps.shape == (6, 16)
    assert np.array_equal(x.sum(-1), np.ones((6, 16)))  # one-hot rows
    x, labels, _ = official_step.official_batch("image", 2, 16, rng)
    assert x.shape == (2, 16, 1) and set(np.asarray(labels)) <= set(range(10))


def test_loop_overhead_cli(tmp_path, monkeypatch, capsys, listops_root):
    """The real loop and the bare step on the tiny config; the summary line is the last thing printed."""
    import loop_overhead

    monkeypatch.setattr(loop_overhead, "CONFIGS", {"tiny": (
        [f"dataset.root={listops_root}", "dataset.max_len=20", "dataset.generate=null", *loop_overhead.TINY], 40)})
    out = tmp_path / "loop.json"
    monkeypatch.setattr(sys, "argv", ["loop_overhead.py", "--configs", "tiny", "--log-every", "10", "--repeats", "1",
                                      "--data-dir", str(tmp_path), "--json", str(out)])
    loop_overhead.main()
    (row,) = json.loads(out.read_text())["rows"]
    assert row["config"] == "tiny" and row["bare_ms"] > 0 and row["loop_ms"] > 0
    assert row["fraction"] == pytest.approx(row["bare_ms"] / row["loop_ms"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == f"loop overhead: real loop at {100 * row['fraction']:.1f}% of the bare step (min over configs)"


def test_pathfinder_contact_sheet(tmp_path):
    """experiments/data/pathfinder_gen_bench.py --sheets: a captioned grid of generated images."""
    import importlib.util

    from s5lra.data.pathfinder_gen import generate_chunk, lra_params

    path = REPO / "experiments" / "data" / "pathfinder_gen_bench.py"
    spec = importlib.util.spec_from_file_location("pathfinder_gen_bench", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = generate_chunk(lra_params(32), np.random.default_rng(0), 3)
    sheet = Image.open(bench.save_contact_sheet([o[0] for o in out], [o[1] for o in out], tmp_path / "sheet.png"))
    assert sheet.mode == "L" and sheet.size[0] > 3 * 32
