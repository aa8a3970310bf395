#!/usr/bin/env bash
# Every GPU figure in one call (experiments/gpu/README.md): environment and kernel self-check, the Pallas tests
# compiled for the GPU, the cost estimate of all six paper configs (trainer.estimate=true), the layer /
# training-step / loop-overhead benchmarks, and a real ListOps run.
#
#   experiments/gpu/check.sh [OUT_DIR]                 # on a GPU: under 9.5 minutes on an H200
#   experiments/gpu/check.sh --cpu-smoke [OUT_DIR]     # the same at tiny sizes on CPU (a few minutes)
#   experiments/gpu/check.sh --sections env,layer      # some sections only (check.py --help)
#
# Runs with $PYTHON if set, else .venv/bin/python when there is one, else the machine's python3 (a GPU machine's
# own JAX). Where hydra or omegaconf is missing and .whl/ holds wheels (experiments/gpu/wheels.sh), they are
# installed into /tmp/site first.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON; elif [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
if ! "$PY" -c "import hydra, omegaconf" 2>/dev/null; then
    if compgen -G ".whl/*.whl" >/dev/null; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
        export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
    else
        echo "check.sh: hydra-core/omegaconf missing and no .whl/ wheels (run experiments/gpu/wheels.sh where pip" \
             "reaches PyPI); the training sections will fail" >&2
    fi
fi
# The package from this checkout, installed or not.
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" experiments/gpu/check.py "$@"
