#!/usr/bin/env bash
# Download into .whl/ (git-ignored) the pure-Python wheels a GPU machine without network lacks: hydra-core,
# omegaconf and antlr4-python3-runtime, at the versions requirements.txt pins (antlr4 at the one hydra-core
# needs). check.sh installs them there with `pip install --no-index --no-deps --target /tmp/site`.
# Run it where pip reaches PyPI:  experiments/gpu/wheels.sh [PYTHON]   (default python3)
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${1:-python3}
pin() { sed -n "s/^$1==//p" requirements.txt; }
rm -rf .whl && mkdir -p .whl
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl \
    "hydra-core==$(pin hydra-core)" "omegaconf==$(pin omegaconf)"
# antlr4-python3-runtime 4.9.3 (hydra-core 1.3 needs 4.9.*) is published as a source archive only: build its
# wheel here (pure Python, so the wheel runs on any Python 3).
"$PY" -m pip wheel -q --no-deps -w .whl "antlr4-python3-runtime==4.9.3"
ls -1 .whl
