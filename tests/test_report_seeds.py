"""The report counts seeds honestly: per setting started / learned / stuck / failed; stuck seeds are in the mean,
the learned-only mean is apart; estimate-only directories are not runs."""

import json
import warnings
from pathlib import Path

import pytest

from s5lra.report import build_report, load_runs
from s5lra.report.aggregate import group_runs, left_out
from s5lra.stuck import StuckRule, outcome
from test_report import make_run


def set_results(path, **changes):
    results = json.loads((path / "results.json").read_text())
    results.update(changes)
    (path / "results.json").write_text(json.dumps(results))
    return path


def test_mixed_run_folders_are_counted_by_outcome(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    saved = {}
    save = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda fig, path, **kw: (saved.__setitem__(Path(path).name, fig),
                                                                    save(fig, path, **kw)))
    runs = tmp_path / "sweep"
    # Path-X seeds: two learned, two stopped at chance, one completed at chance, one failed, one diverged,
    # one preempted before its first evaluation, one still running; majority baseline 0.5, so learned means best
    # val > 0.55
    for seed, test in ((0, 0.98), (1, 0.96)):
        set_results(make_run(runs / str(seed), task="pathx", seed=seed, test=test, val=test), majority_baseline=0.5,
                    learned=True)
    for seed in (2, 3):
        set_results(make_run(runs / str(seed), task="pathx", seed=seed, test=0.5, val=0.505, epochs=10),
                    majority_baseline=0.5, status="stuck", learned=False, learned_threshold=0.55)
    set_results(make_run(runs / "4", task="pathx", seed=4, test=0.51, val=0.52), majority_baseline=0.5)
    set_results(make_run(runs / "5", task="pathx", seed=5), status="failed", error="OSError: disk full")
    set_results(make_run(runs / "6", task="pathx", seed=6), status="diverged")
    set_results(make_run(runs / "7", task="pathx", seed=7), status="preempted", test_accuracy=None,
                best_val_accuracy=None)
    set_results(make_run(runs / "8", task="pathx", seed=8), status="running")  # still going (or killed)
    estimate_only = runs / "estimate"  # trainer.estimate=true: its config and estimate.json, nothing trained
    (estimate_only / ".hydra").mkdir(parents=True)
    (estimate_only / ".hydra" / "config.yaml").write_text("name: lra/pathx\ndataset: {name: pathx}\n")
    (estimate_only / "estimate.json").write_text("{}")

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the estimate-only directory is no broken run
        loaded = load_runs([runs])
    assert sorted(r.path.name for r in loaded) == [str(s) for s in range(9)]
    [group] = group_runs(loaded)
    assert group.seeds == [0, 1, 2, 3, 4] and group.outcomes == ["learned", "learned", "stuck", "stuck", "chance"]
    assert group.counts == {"started": 9, "learned": 2, "chance": 1, "stuck": 2, "failed": 2, "unfinished": 2}
    assert group.mean == pytest.approx((98 + 96 + 50 + 50 + 51) / 5)  # every completed seed, stuck included
    assert group.learned_mean == pytest.approx(97.0) and group.learned_std == pytest.approx(2 ** 0.5)
    assert group.paper == 98.58  # the paper comparison is over all completed seeds
    assert sorted(r["status"] for r in left_out(loaded)) == ["diverged", "failed", "preempted", "running"]

    build_report([runs], tmp_path / "out")
    md = (tmp_path / "out" / "results.md").read_text()
    assert "| Path-X | `lra/pathx` | 69.00 ± 25.57 | 5 |" in md
    seeds = md.split("## Seeds per setting", 1)[1]
    assert "| `lra/pathx` (Path-X) | 9 | 2 | 2 | 2 | 1 | 2 | 69.00 ± 25.57 (5) | 97.00 ± 1.41 (2) |" in seeds
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())["groups"][0]
    assert summary["counts"]["stuck"] == 2 and summary["n_learned"] == 2
    assert (tmp_path / "out" / "curves_lra_pathx.png").stat().st_size > 0
    labels = [t.get_text() for t in saved["curves_lra_pathx.png"].legends[0].get_texts()]
    assert "seed 2 (stuck) val" in labels and "seed 3 (stuck) test" in labels and "seed 0 val" in labels
    assert "learned above (55.0%: majority + margin)" in labels


def test_outcomes_of_results_files():
    assert outcome({"status": "completed", "learned": True}) == "learned"
    assert outcome({"status": "completed", "learned": False}) == "chance"
    assert outcome({"status": "stuck"}) == "stuck"
    assert outcome({"status": "diverged"}) == outcome({"status": "failed"}) == "failed"
    assert outcome({"status": "preempted"}) == outcome({}) == "unfinished"  # {}: no accuracy to judge
    # written before `learned` existed: judged against its majority baseline with the default margin
    assert outcome({"best_val_accuracy": 0.56, "majority_baseline": 0.5}) == "learned"
    assert outcome({"best_val_accuracy": 0.54, "majority_baseline": 0.5}) == "chance"


def test_stuck_rule_defaults_and_boundaries():
    pathx = StuckRule.for_task("pathx", epochs=75)
    assert (pathx.after_epochs, pathx.margin) == (10, 0.05)
    assert StuckRule.for_task("pathfinder", epochs=200).after_epochs == 20
    assert StuckRule.for_task("listops", epochs=40).after_epochs == 4
    assert StuckRule.for_task("demo", epochs=3).after_epochs == 1
    assert StuckRule.for_task("pathx", 75, after_epochs=2.5, margin=0.1) == StuckRule(2.5, 0.1)
    assert not pathx.stuck(9.99, 0.5, 0.5)           # too early to judge
    assert pathx.stuck(10, 0.55, 0.5)                # exactly baseline + margin is not above it
    assert not pathx.stuck(10, 0.5501, 0.5)
    assert not pathx.stuck(10, None, 0.5)            # nothing evaluated yet
