"""A few training steps of every LRA task on tiny fixtures in the release formats; sizes come from the data."""

import pytest

from helpers import TINY, run_inprocess, write_cifar, write_pathfinder

pytestmark = pytest.mark.usefixtures("shared_compilation_cache")


def write_imdb(root):
    for split in ("train", "test"):
        for label, text in (("pos", "A fine film, loved it."), ("neg", "Dull; I left early.")):
            folder = root / "aclImdb" / split / label
            folder.mkdir(parents=True)
            for i in range(4):
                (folder / f"{i}_{7 if label == 'pos' else 2}.txt").write_text(text * (i + 1))


def write_aan(root):
    folder = root / "tsv_data"
    folder.mkdir(parents=True)
    row = lambda i: f"{i % 2}\tid{i}\tjd{i}\tpaper {i} on {'cats' * i}\tcites \"{i}\"\n"  # noqa: E731
    for split, n in (("train", 8), ("eval", 4), ("test", 4)):
        (folder / f"new_aan_pairs.{split}.tsv").write_text("".join(row(i) for i in range(n)))


FIXTURES = {  # task: (writer, dataset overrides)
    "text": (write_imdb, ["dataset.max_len=32", "dataset.options.min_freq=1"]),
    "retrieval": (write_aan, ["dataset.max_len=24"]),
    "image": (lambda root: write_cifar(root / "cifar-10-batches-py", n_per_batch=4), []),
    "pathfinder": (lambda root: write_pathfinder(root, side=32, per_batch=8), []),
    "pathx": (lambda root: write_pathfinder(root, side=128, per_batch=8), []),
}


@pytest.mark.parametrize("task", sorted(FIXTURES))
def test_a_few_steps_of_every_task(task, tmp_path):
    writer, dataset = FIXTURES[task]
    writer(tmp_path / "data")
    overrides = [f"experiment=lra/{task}", f"dataset.root={tmp_path / 'data'}", *TINY, "trainer.batch_size=4",
                 "trainer.max_steps=2", *dataset]
    results = run_inprocess(tmp_path / "run", overrides)
    assert results["steps"] == 2 and results["status"] == "completed" and results["name"] == f"lra/{task}"
    assert 0 <= results["test_accuracy"] <= 1 and results["n_params"] > 0
