"""The processed cache (keyed, invalidated, atomic, memory-mapped) and the `s5lra-data` command."""

import io
import json
import os
import tarfile
import time
from urllib.error import URLError

import numpy as np
import pytest

from s5lra.data import DataError, load_task
from s5lra.data import cache, download
from s5lra.data.cli import main

ROWS = ["( ( ( [MAX 2 ) 9 ) ] )\t9", "( ( ( [SM 5 ) 7 ) ] )\t2", "( ( [MIN 3 ) ] )\t3"]


@pytest.fixture
def root(tmp_path):
    folder = tmp_path / "listops-1000"
    folder.mkdir()
    for split in ("train", "val", "test"):
        (folder / f"basic_{split}.tsv").write_text("Source\tTarget\r\n" + "".join(r + "\r\n" for r in ROWS))
    return tmp_path


def test_cache_is_memory_mapped_keyed_and_described(root):
    data = load_task("listops", root)
    assert isinstance(data.splits["train"].inputs, np.memmap)
    meta = json.loads((data.cache_dir / "meta.json").read_text())
    assert meta["format"] == cache.FORMAT_VERSION and meta["settings"]["max_len"] == 2048
    assert meta["vocab"] == data.vocab and {s["path"] for s in meta["sources"]} == {
        os.path.join("listops-1000", f"basic_{s}.tsv") for s in ("train", "val", "test")}
    assert all("bytes" in s and "mtime_ns" in s for s in meta["sources"])
    again = load_task("listops", root)
    assert again.cache_dir == data.cache_dir
    other = load_task("listops", root, max_len=64)
    assert other.cache_dir != data.cache_dir and other.splits["train"].inputs.shape == (3, 64)


def test_changed_source_rebuilds(root):
    data = load_task("listops", root)
    built = (data.cache_dir / "meta.json").stat().st_mtime_ns
    path = root / "listops-1000" / "basic_train.tsv"
    path.write_text(path.read_text() + "( ( [MIN 4 ) ] )\t4\r\n")
    fresh = load_task("listops", root)
    assert fresh.cache_dir == data.cache_dir and len(fresh.splits["train"]) == 4
    assert (fresh.cache_dir / "meta.json").stat().st_mtime_ns != built
    os.utime(path, ns=(1, 1))  # same size, other mtime
    assert load_task("listops", root).splits["train"].labels.tolist() == [9, 2, 3, 4]
    assert sorted(p.name for p in (root / "cache").iterdir()) == [data.cache_dir.name]  # no leftovers


def test_failed_rebuild_keeps_nothing_partial(root, monkeypatch):
    def broken(writer):
        writer.new("train", "inputs", (3, 4), np.uint8)
        raise DataError("boom")

    with pytest.raises(DataError, match="boom"):
        cache.load_or_build(root / "cache", "x", {}, root, [], broken)
    assert list((root / "cache").iterdir()) == []


def run_cli(args, capsys):
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_stats_json_schema(root, capsys):
    code, out, err = run_cli(["stats", "listops", "--root", str(root), "--json"], capsys)
    assert code == 0
    stats = json.loads(out)
    assert set(stats) == {"task", "n_classes", "vocab_size", "seq_len", "splits", "skipped"}
    assert (stats["task"], stats["n_classes"], stats["vocab_size"], stats["seq_len"]) == ("listops", 10, 12, 2048)
    assert set(stats["splits"]) == {"train", "val", "test"} and stats["skipped"] == {}
    train = stats["splits"]["train"]
    assert set(train) == {"examples", "label_counts", "max_length", "mean_length"}
    assert train["examples"] == 3 and train["max_length"] == 5 and train["mean_length"] == pytest.approx(14 / 3)
    assert train["label_counts"] == {str(k): int(k in (2, 3, 9)) for k in range(10)}
    assert err.startswith(f"s5lra-data: built a cache for these settings: {root / 'cache'}")
    code, out, err = run_cli(["stats", "listops", "--root", str(root), "--max-len", "4"], capsys)
    assert code == 0 and "train" in out and "seq_len 4" in out
    assert "built a cache" in err and "'max_len': 2048" in err  # a second cache is never built quietly
    code, _, err = run_cli(["stats", "listops", "--root", str(root), "--max-len", "4"], capsys)
    assert code == 0 and err == ""  # read, not built


def test_prepare_and_user_errors_exit_2_with_one_line(root, capsys):
    code, out, _ = run_cli(["prepare", "listops", "--root", str(root)], capsys)
    assert code == 0 and out.strip().startswith(str(root / "cache" / "listops-"))
    (root / "listops-1000" / "basic_val.tsv").write_text("Source\tTarget\n( ( [MIN 3 ) ] )\tx\n")
    code, out, err = run_cli(["prepare", "listops", "--root", str(root)], capsys)
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert f"{root / 'listops-1000' / 'basic_val.tsv'}:2: label 'x' is not a number" in err
    code, _, err = run_cli(["stats", "text", "--root", str(root)], capsys)
    assert code == 2 and "s5lra-data download imdb" in err and "aclImdb" in err
    code, _, err = run_cli(["prepare", "listops", "--root", str(root), "-o", "min_freq=3"], capsys)
    assert code == 2 and "unknown option(s) ['min_freq']" in err


def test_generate_listops_command(tmp_path, capsys):
    args = ["generate", "listops", "--root", str(tmp_path), "--n-train", "50", "--n-val", "5", "--n-test", "5",
            "--min-length", "10", "--max-length", "40", "--max-depth", "3", "--workers", "1"]
    code, out, err = run_cli(args, capsys)
    assert code == 0 and out.strip() == str(tmp_path / "listops-1000")
    assert f"wrote 50 train, 5 val and 5 test ListOps examples to {tmp_path / 'listops-1000'}" in err
    assert len(load_task("listops", tmp_path).splits["train"]) == 50
    code, out, err = run_cli([*args[:2], "--root", str(tmp_path / "n"), "--n", "100", *args[10:]], capsys)
    assert code == 0 and "wrote 96 train, 2 val and 2 test ListOps examples" in err
    assert {s: len(x) for s, x in load_task("listops", tmp_path / "n").splits.items()} == dict(train=96, val=2, test=2)
    code, _, err = run_cli([*args, "--n", "100"], capsys)
    assert code == 2 and "either --n or --n-train" in err


def test_download_offline_fails_fast_with_manual_instructions(tmp_path, monkeypatch, capsys):
    def offline(*args, **kwargs):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(download, "urlopen", offline)
    start = time.monotonic()
    code, _, err = run_cli(["download", "imdb", "--root", str(tmp_path)], capsys)
    assert code == 2 and time.monotonic() - start < 2
    assert "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz" in err
    assert str(tmp_path / "aclImdb_v1.tar.gz") in err and "by hand" in err


def test_download_verifies_and_extracts_an_archive_put_there_by_hand(tmp_path, monkeypatch, capsys):
    def no_network(*args, **kwargs):
        raise AssertionError("must not touch the network")

    monkeypatch.setattr(download, "urlopen", no_network)
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("cifar-10-batches-py/readme.html")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"hello"))
    code, _, err = run_cli(["download", "cifar10", "--root", str(tmp_path)], capsys)
    assert code == 2 and "MD5" in err  # the fixture is not the real archive
    import hashlib

    real = download.ARCHIVES["cifar10"]
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    monkeypatch.setitem(download.ARCHIVES, "cifar10", download.Archive(real.file, real.url, md5, real.folder))
    code, out, _ = run_cli(["download", "cifar10", "--root", str(tmp_path)], capsys)
    assert code == 0 and (tmp_path / "cifar-10-batches-py" / "readme.html").read_text() == "hello"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".extract")]


def test_module_entry_point(root):
    import subprocess
    import sys

    ok = subprocess.run([sys.executable, "-m", "s5lra.data", "stats", "listops", "--root", str(root), "--json"],
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and json.loads(ok.stdout)["splits"]["val"]["examples"] == 3
    missing = subprocess.run([sys.executable, "-m", "s5lra.data", "prepare", "pathx", "--root", str(root)],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert "pathfinder128/curv_contour_length_14/metadata" in missing.stderr
    assert "s5lra-data generate pathfinder --resolution 128" in missing.stderr
