"""`python -m s5lra.report RUN_DIR... [--out DIR]`: the command line of build_report."""

import argparse
import warnings

from s5lra.report.build import build_report


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m s5lra.report", description=(
        "Compare training runs with the S5 paper: results.md, summary.json and PNG plots. RUN_DIRs may be single "
        "runs, multirun sweep folders or any folder above them (searched recursively)."))
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    parser.add_argument("--out", default="experiments/results", help="output folder (default: %(default)s)")
    args = parser.parse_args(argv)
    warnings.formatwarning = lambda message, category, *rest: f"warning: {message}\n"
    for path in build_report(args.run_dirs, args.out):
        print(path)


if __name__ == "__main__":
    main()
