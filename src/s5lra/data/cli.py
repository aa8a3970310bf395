"""`s5lra-data`: generate, download, prepare and inspect the LRA data.

    s5lra-data generate listops --root DIR [--n N | --n-train N --n-val N --n-test N] [--seed S --workers W ...]
    s5lra-data generate pathfinder --resolution 32 --difficulty hard --n N --root DIR [--seed S --workers W]
    s5lra-data download lra|imdb|cifar10 --root DIR
    s5lra-data prepare TASK --root DIR [--max-len N] [-o key=value ...]
    s5lra-data stats TASK --root DIR [--json]

User errors (bad or missing data, bad settings) print one line naming the file/line or key and exit with 2.
`generate` refuses a non-empty output folder unless --overwrite. Ctrl-C and SIGTERM stop the worker processes
and leave nothing half-written where readers look (exit 130 / 143).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from dataclasses import fields
from pathlib import Path

from s5lra.data.listops_gen import ListOpsSettings
from s5lra.data.tasks import TASKS
from s5lra.data.workers import stop_signals_raise
from s5lra.errors import DataError

SIZES = ("n_train", "n_val", "n_test")
LRA_SPLIT = "96/2/2 %"  # ListOpsSettings' defaults: 96,000 / 2,000 / 2,000
OVERWRITE_HELP = "replace the output folder if it is not empty (the new one replaces it only once complete)"


def _value(text: str):
    """`-o key=value` values: JSON when it parses (numbers, true/false, null), else the plain string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _options(pairs: list[str]) -> dict:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise DataError(f"-o {pair!r}: expected key=value")
        options[key] = _value(value)
    return options


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="s5lra-data", description="Long Range Arena data for s5lra.")
    commands = parser.add_subparsers(dest="command", required=True)

    generate = commands.add_parser("generate", help="create a synthetic task's data")
    kinds = generate.add_subparsers(dest="kind", required=True)
    listops = kinds.add_parser("listops", help="ListOps TSVs (LRA's generator)")
    listops.add_argument("--root", default="data")
    listops.add_argument("--n", type=int, default=None,
                         help=f"examples in all, split as LRA's {LRA_SPLIT} (instead of --n-train/--n-val/--n-test)")
    for f in fields(ListOpsSettings):  # the sizes default to None: --n or ListOpsSettings decides
        listops.add_argument("--" + f.name.replace("_", "-"), type=int,
                             default=None if f.name in SIZES else f.default)
    listops.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    listops.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    pathfinder = kinds.add_parser("pathfinder", help="Pathfinder/Path-X images (Linsley et al.'s generator)")
    pathfinder.add_argument("--root", default="data")
    pathfinder.add_argument("--resolution", type=int, choices=(32, 64, 128, 256), default=32)
    pathfinder.add_argument("--difficulty", choices=("easy", "intermediate", "hard"), default="hard")
    pathfinder.add_argument("--n", type=int, required=True, help="number of images")
    pathfinder.add_argument("--seed", type=int, default=0)
    pathfinder.add_argument("--workers", type=int, default=None)
    pathfinder.add_argument("--batch-size", type=int, default=None, help="images per imgs/<batch> folder")
    pathfinder.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)

    download = commands.add_parser("download", help="fetch and extract a canonical archive")
    download.add_argument("archive", choices=("lra", "imdb", "cifar10"))
    download.add_argument("--root", default="data")
    download.add_argument("--timeout", type=float, default=10.0, help="socket timeout in seconds")

    for name, text in (("prepare", "build a task's cache"), ("stats", "print a task's statistics")):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("task", choices=sorted(TASKS))
        sub.add_argument("--root", default="data")
        sub.add_argument("--max-len", type=int, default=None, help="token tasks: padded length")
        sub.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE",
                         help="task option, e.g. min_freq=15, resolution=64, difficulty=easy, val_split=random")
        sub.add_argument("--workers", type=int, default=None)
        sub.add_argument("--cache-dir", default=None)
        if name == "prepare":
            sub.add_argument("--rebuild", action="store_true", help="rebuild even if the cache is current")
        else:
            sub.add_argument("--json", action="store_true", help="print exactly one JSON object")
    return parser


def _say_built(folder, others: set) -> None:
    """`stats` built a cache: say so, and which settings the caches already there have (a run's own data, e.g.
    the demo's, is read with its own settings, not rebuilt)."""
    settings = []
    for other in sorted(others):
        try:
            settings.append(json.loads((other / "meta.json").read_text())["settings"])
        except (OSError, ValueError, KeyError):
            continue
    note = f"; the caches already there have {settings} (pass the same --max-len/-o to read one)" if settings else ""
    print(f"s5lra-data: built a cache for these settings: {folder}{note}", file=sys.stderr)


def _run(args: argparse.Namespace) -> None:
    if args.command == "generate" and args.kind == "listops":
        from s5lra.data.listops_gen import generate_listops

        given = {f.name: getattr(args, f.name) for f in fields(ListOpsSettings) if getattr(args, f.name) is not None}
        if args.n is not None:
            if set(SIZES) & set(given):
                raise DataError("--n: give either --n or --n-train/--n-val/--n-test, not both")
            held_out = max(1, round(args.n * 0.02))
            if args.n - 2 * held_out < 1:
                raise DataError(f"--n {args.n}: need at least 3 examples (one per split)")
            given.update(n_train=args.n - 2 * held_out, n_val=held_out, n_test=held_out)
        settings = ListOpsSettings(**given)
        folder = generate_listops(args.root, settings, workers=args.workers, overwrite=args.overwrite)
        print(f"wrote {settings.n_train:,} train, {settings.n_val:,} val and {settings.n_test:,} test ListOps "
              f"examples to {folder}/basic_{{train,val,test}}.tsv (settings: generator.json)", file=sys.stderr)
        print(folder)
    elif args.command == "generate":
        from s5lra.data.pathfinder_gen import generate_pathfinder

        extra = {"batch_size": args.batch_size} if args.batch_size else {}
        folder = generate_pathfinder(args.root, resolution=args.resolution, difficulty=args.difficulty, n=args.n,
                                     seed=args.seed, workers=args.workers, overwrite=args.overwrite, **extra)
        print(f"wrote {args.n:,} Pathfinder images ({args.resolution} px, {args.difficulty}) to {folder} "
              f"(split 80/10/10 when loaded; settings: generator.json)", file=sys.stderr)
        print(folder)
    elif args.command == "download":
        from s5lra.data.download import download

        print(download(args.archive, args.root, timeout=args.timeout))
    else:
        from s5lra.data.tasks import load_task

        options = _options(args.option)
        if args.workers:
            options["workers"] = args.workers
        rebuild = getattr(args, "rebuild", False)
        cache_root = Path(args.cache_dir or Path(args.root) / "cache").expanduser()
        before = {p.resolve() for p in cache_root.glob(f"{args.task}-*")}
        data = load_task(args.task, args.root, max_len=args.max_len, cache_dir=args.cache_dir, rebuild=rebuild,
                         **options)
        if args.command == "prepare":
            print(data.cache_dir)
            return
        if Path(data.cache_dir).resolve() not in before:
            _say_built(data.cache_dir, before)
        from s5lra.data.stats import format_table, task_stats

        stats = task_stats(data)
        print(json.dumps(stats) if args.json else format_table(stats))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        with stop_signals_raise():
            _run(args)
    except DataError as e:
        print(f"s5lra-data: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        signum = getattr(e, "signum", signal.SIGINT)
        print(f"s5lra-data: interrupted ({signal.Signals(signum).name}); workers stopped, nothing half-written "
              f"left in place (a Pathfinder run keeps its finished batches in .<folder>.partial and resumes from "
              f"them)", file=sys.stderr)
        return 128 + signum
    return 0


if __name__ == "__main__":
    sys.exit(main())
