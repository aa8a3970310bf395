"""The report's settings: rows are experiment + semantic overrides, only completed evaluated runs are averaged,
only the paper's settings are compared with the paper; and the override classification it shares with training."""

import json

import pytest
import yaml

from s5lra.overrides import overrides_label, partial_overrides, semantic_overrides
from s5lra.report import build_report, load_runs
from s5lra.report.aggregate import group_runs, left_out, lra_average
from s5lra.report.paper import PAPER_ACCURACY, TASKS
from test_report import make_run


def with_overrides(path, listed, **results):
    (path / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(listed))
    if results:
        r = json.loads((path / "results.json").read_text())
        r.update(results)
        (path / "results.json").write_text(json.dumps(r))
    return path


def table_rows(out):
    md = (out / "results.md").read_text()
    return md, [[c.strip() for c in line.strip("|").split("|")] for line in md.splitlines()
                if line.startswith("| ListOps")]


def test_semantic_overrides_and_labels():
    given = ["experiment=lra/listops", "seed=3", "paths.data_dir=/data", "logger=none", "logger.mode=offline",
             "hydra.run.dir=x", "trainer.progress=false", "trainer.resume=auto", "trainer.log_every=10",
             "trainer.checkpoint_every=100", "optimizer.lr=0.001", "model.n_layers=4", "+model.extra=1",
             "trainer.epochs=3", "trainer.eval_every=50", "dataset.max_len=1024"]
    assert semantic_overrides(given) == ["dataset.max_len=1024", "+model.extra=1", "model.n_layers=4",
                                         "optimizer.lr=0.001", "trainer.epochs=3", "trainer.eval_every=50"]
    assert overrides_label(["seed=1", "optimizer.lr=0.001", "model.n_layers=4"]) == \
        "model.n_layers=4,optimizer.lr=0.001"
    assert overrides_label(["seed=1", "paths.data_dir=x"]) == "" and overrides_label([]) == ""
    # `-m optimizer.lr=0.001,0.003` runs two jobs whose overrides differ in one value: two names, two groups
    assert overrides_label(["optimizer.lr=0.001", "seed=0"]) != overrides_label(["optimizer.lr=0.003", "seed=0"])
    long_a = [f"model.k{i}={'x' * 20}" for i in range(8)]
    long_b = long_a[:-1] + [f"model.k7={'y' * 20}"]
    assert len(overrides_label(long_a)) <= 100 and overrides_label(long_a) != overrides_label(long_b)
    # model overrides first and in full; only data paths and long dict values are shortened (with their hash)
    generate = "dataset.generate={n_train:64,n_val:12,n_test:20,max_depth:3,max_args:3,min_length:2,max_length:20}"
    label = overrides_label([generate, "dataset.max_len=20", "model.n_layers=1", "model.d_model=8", "trainer.epochs=2",
                             "dataset.options.tfds_dir=/home/me/tensorflow_datasets"], max_len=None)
    assert label.startswith("model.d_model=8,model.n_layers=1,dataset.generate={n_train:64,n_va...~")
    assert ",dataset.options.tfds_dir=.../tensorflow_datasets~" in label and label.endswith(",trainer.epochs=2")
    assert overrides_label([generate, "model.n_layers=1"]) != overrides_label(
        [generate.replace("20}", "21}"), "model.n_layers=1"])
    assert overrides_label([generate, *[f"model.k{i}=1" for i in range(9)]]).startswith("model.k0=1,model.k1=1")
    assert partial_overrides(["trainer.max_steps=100", "seed=0"]) == ["trainer.max_steps=100"]
    assert partial_overrides(["trainer.max_steps=null"]) == []


def test_rows_per_setting_seeds_averaged_and_only_the_paper_setting_compared(tmp_path):
    runs = tmp_path / "runs"
    for seed, test in ((0, 0.60), (1, 0.62)):  # the paper's setting; only where files go differs
        with_overrides(make_run(runs / f"base{seed}", seed=seed, test=test, val=0.6),
                       ["experiment=lra/listops", f"seed={seed}", f"paths.data_dir=/d{seed}", "logger=none"])
    for lr, test in (("0.001", 0.50), ("0.003", 0.40)):  # one multirun over optimizer.lr, two seeds each
        for seed in (0, 1):
            with_overrides(make_run(runs / f"lr{lr}_{seed}", seed=seed, test=test + 0.01 * seed, val=0.5),
                           ["experiment=lra/listops", f"seed={seed}", f"optimizer.lr={lr}"])
    groups = group_runs(load_runs([runs]))
    assert [(g.label, g.seeds) for g in groups] == [("", [0, 1]), ("optimizer.lr=0.001", [0, 1]),
                                                    ("optimizer.lr=0.003", [0, 1])]
    base, lr1, lr3 = groups
    assert base.mean == pytest.approx(61.0) and base.paper == PAPER_ACCURACY["listops"]
    assert lr1.mean == pytest.approx(50.5) and lr3.mean == pytest.approx(40.5)
    assert lr1.paper is None and lr1.gap is None and lr1.not_compared == "overrides optimizer.lr=0.001"
    build_report([runs], tmp_path / "out")
    md, rows = table_rows(tmp_path / "out")
    assert [r[1] for r in rows] == ["`lra/listops`", "`lra/listops` `optimizer.lr=0.001`",
                                    "`lra/listops` `optimizer.lr=0.003`"]
    assert rows[0][5:7] == ["62.15", "-1.15"] and rows[1][5:7] == rows[2][5:7] == ["—", "—"]
    assert "- ListOps `lra/listops` `optimizer.lr=0.003`: overrides optimizer.lr=0.003" in md
    assert (tmp_path / "out" / "curves_lra_listops_optimizer.lr_0.001.png").is_file()


def test_unfinished_runs_are_listed_apart_and_left_out_of_the_means(tmp_path):
    runs = tmp_path / "runs"
    make_run(runs / "done", seed=0, test=0.60, val=0.6)
    for seed, status in enumerate(("preempted", "interrupted", "diverged", "failed"), start=1):
        with_overrides(make_run(runs / status, seed=seed, test=0.10, val=0.1), [f"seed={seed}"], status=status,
                       epochs=3.25)
    with_overrides(make_run(runs / "fresh", seed=9), ["seed=9"], status="preempted", test_accuracy=None,
                   best_val_accuracy=None, final_test_accuracy=None, epochs=0.09333)
    with_overrides(make_run(runs / "noeval", seed=8), ["seed=8"], test_accuracy=None, best_val_accuracy=None)
    loaded = load_runs([runs])
    [group] = group_runs(loaded)
    assert group.seeds == [0] and group.mean == pytest.approx(60.0)
    apart = {r["run_dir"].rsplit("/", 1)[1]: r for r in left_out(loaded)}
    assert sorted(apart) == ["diverged", "failed", "fresh", "interrupted", "noeval", "preempted"]
    assert apart["preempted"]["reason"] == "preempted at epoch 3.2"
    assert apart["fresh"]["reason"] == "preempted at epoch 0.1; no evaluation yet"
    assert apart["noeval"]["reason"].startswith("no evaluation yet") and apart["noeval"]["status"] == "completed"
    build_report([runs], tmp_path / "out")
    md = (tmp_path / "out" / "results.md").read_text()
    section = md.split("## Runs left out of the means", 1)[1]
    assert "| ListOps | `lra/listops` | 9 | preempted | preempted at epoch 0.1; no evaluation yet |" in section
    assert all(f"| {s} |" in section for s in ("interrupted", "diverged", "failed"))
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert sorted(r["status"] for r in summary["left_out"]) == ["completed", "diverged", "failed", "interrupted",
                                                                "preempted", "preempted"]
    assert [g["seeds"] for g in summary["groups"]] == [[0]]


def test_demo_and_partial_runs_are_never_compared_with_the_paper(tmp_path):
    runs = tmp_path / "runs"
    make_run(runs / "demo", experiment="demo", test=0.52, val=0.5, epochs=3)
    with_overrides(make_run(runs / "short", seed=1, test=0.3, val=0.3), ["trainer.max_steps=7", "seed=1"],
                   epochs=0.09333)
    groups = group_runs(load_runs([runs]))
    by_experiment = {(g.experiment, g.label): g for g in groups}
    demo, short = by_experiment[("demo", "")], by_experiment[("lra/listops", "trainer.max_steps=7")]
    assert demo.paper is None and "demo" in demo.not_compared
    assert short.paper is None and short.not_compared.startswith("partial run (trainer.max_steps=7")
    build_report([runs], tmp_path / "out")
    md, rows = table_rows(tmp_path / "out")
    assert {r[1]: (r[5], r[6], r[7]) for r in rows} == {"`demo`": ("—", "—", "3.0 / —"),
                                                       "`lra/listops` `trainer.max_steps=7`": ("—", "—", "0.1 / —")}
    assert "62.15" not in md


def test_results_overrides_win_and_average_needs_the_paper_settings(tmp_path):
    for t in TASKS:
        make_run(tmp_path / t, task=t, test=(PAPER_ACCURACY[t] - 1) / 100, val=0.5)
    assert lra_average(group_runs(load_runs([tmp_path])))["mean"] == pytest.approx(87.46 - 1, abs=0.01)
    with_overrides(tmp_path / "image", ["seed=0"], overrides=["model.d_model=128"])
    runs = load_runs([tmp_path])
    assert next(r for r in runs if r.task == "image").overrides == ["model.d_model=128"]
    assert lra_average(group_runs(runs)) is None


def test_malformed_overrides_file_skips_the_run_naming_it(tmp_path):
    bad = make_run(tmp_path / "bad")
    (bad / ".hydra" / "overrides.yaml").write_text("seed: 1\n")
    with pytest.warns(UserWarning, match=r"overrides.yaml: overrides: expected a list"):
        assert load_runs([tmp_path]) == []
