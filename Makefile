# s5lra: `make demo` (set up, generate a small ListOps, train on CPU) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
DATA_PATH ?= ./data

.PHONY: install install-gpu install-extras test test-slow test-compat test-compat-ci demo clean

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

# The optional extras (cluster launchers, search, dashboard, TFDS), pinned; the tests of each need them.
install-extras: $(VENV)/.extras

$(VENV)/.extras: $(VENV)/.installed requirements-extras.txt
	$(PY) -m pip install -q -r requirements-extras.txt -c requirements.txt
	touch $@

# The same environment with JAX's CUDA 12 plugin (same JAX version as requirements.txt).
install-gpu: install
	$(PY) -m pip install -q "jax[cuda12]==$$(sed -n 's/^jax==//p' requirements.txt)"

test: install install-extras
	$(PY) -m pytest -q -n 2 --dist loadfile

test-slow: install install-extras
	$(PY) -m pytest -q -m slow

# --- JAX compatibility matrix ---------------------------------------------------------------------------------
# The core suite (COMPAT_TESTS) on each JAX of COMPAT_JAX, each in its own environment (.venv/compat/jax-V):
# requirements.txt without wandb, with experiments/compat/jax-V.txt's pins instead of its own. JAX 0.11 and newer
# need Python >= 3.12: COMPAT_PYTHON (pyenv's 3.12 if there, else python3.12 on PATH).
COMPAT_JAX    ?= $(patsubst experiments/compat/jax-%.txt,%,$(wildcard experiments/compat/jax-*.txt))
COMPAT_PYTHON ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3.12) $(shell command -v python3.12))
COMPAT_TESTS  ?= tests/test_ssm.py tests/test_variants.py tests/test_model.py tests/test_train_optim.py \
                 tests/test_train_parallel.py tests/test_train_trust.py tests/test_gpu_stack.py
COMPAT_ENV    := $(VENV)/compat
# CI's leg (.ci/run): the GPU machine's JAX on a quick cut of the core suite (SSM, model, optimizer, the
# sharded step, checkpoint round trip, a resumed tiny run, logger=none without wandb), chosen by name (-k).
COMPAT_K      ?= not new_wandb_run  # the one core test that needs wandb, which these environments lack
COMPAT_CI_K   := float64_reference or hippo_eigenvalues or pallas_under_vmap or parameter_counts or \
                 classifier_outputs or test_train_optim or same_run_on_one_device or checkpoint_round_trips or \
                 resume_equal or test_gpu_stack

test-compat: $(COMPAT_JAX:%=test-compat-%)

test-compat-ci:
	$(MAKE) test-compat-0.11.2 COMPAT_K="$(COMPAT_CI_K)"

.PRECIOUS: $(COMPAT_ENV)/jax-%/.installed

test-compat-%: $(COMPAT_ENV)/jax-%/.installed
	$(COMPAT_ENV)/jax-$*/bin/python -m pytest -q -n 2 --dist loadfile $(COMPAT_TESTS) $(if $(COMPAT_K),-k "$(COMPAT_K)")

$(COMPAT_ENV)/jax-%/.installed: experiments/compat/jax-%.txt requirements.txt pyproject.toml
	@$(COMPAT_PYTHON) -c 'import sys; assert sys.version_info >= (3, 12)' 2>/dev/null || { echo "error: \
	JAX $* needs Python >= 3.12; '$(COMPAT_PYTHON)' is not one: set COMPAT_PYTHON=/path/to/python3.12" >&2; exit 1; }
	rm -rf $(@D) && $(COMPAT_PYTHON) -m venv $(@D)
	grep -v -E "^($$(sed -n 's/==.*//p' $< | paste -sd'|')|wandb)==" requirements.txt > $(@D)/requirements.txt
	$(@D)/bin/python -m pip install -q -r $(@D)/requirements.txt -r $<
	$(@D)/bin/python -m pip install -q --no-deps -e .
	touch $@

demo: install
	$(PY) run_train.py paths.data_dir=$(DATA_PATH)

clean:
	rm -rf $(VENV) src/*.egg-info

# --- Training and reproduction (configs/experiment/lra/*.yaml; data under DATA_PATH) -------------------------
# Extra Hydra overrides go in ARGS, e.g. `make listops ARGS="trainer.max_steps=100 logger.mode=disabled"`.
LRA_TASKS    := listops text retrieval image pathfinder pathx
ARGS         ?=
LEARNED      ?= 3
MAX_SEEDS    ?= 8
PARALLEL     ?= 4
PATHFINDER_N ?= 200000
PATHX_N      ?= 200000
DATA_CLI     := $(VENV)/bin/s5lra-data

.PHONY: $(LRA_TASKS) lra sweep-pathx data-listops data-pathfinder data-pathx download

$(LRA_TASKS): install
	$(PY) run_train.py experiment=lra/$@ paths.data_dir=$(DATA_PATH) $(ARGS)

lra: $(LRA_TASKS)

# Path-X is seed-sensitive (docs/stuck-seeds.md: some seeds never leave chance). A seed budget: seeds 0, 1, ... in
# waves of PARALLEL until LEARNED seeds have learned or MAX_SEEDS were tried, each seed still at chance after 10
# epochs stopped (status stuck); sub-folders 0, 1, ... of one sweep, tallied in its seed_budget.json. On a cluster:
# make sweep-pathx ARGS="hydra/launcher=slurm hydra.launcher.partition=gpu" (one job array per wave).
sweep-pathx: install
	$(PY) run_train.py -m hydra/sweeper=seed_budget experiment=lra/pathx paths.data_dir=$(DATA_PATH) \
		trainer.stop_if_stuck=true hydra.sweeper.learned=$(LEARNED) hydra.sweeper.max_seeds=$(MAX_SEEDS) \
		hydra.sweeper.parallel=$(PARALLEL) $(ARGS)

data-listops: install
	$(DATA_CLI) generate listops --root $(DATA_PATH)

data-pathfinder: install
	$(DATA_CLI) generate pathfinder --root $(DATA_PATH) --resolution 32 --n $(PATHFINDER_N)

data-pathx: install
	$(DATA_CLI) generate pathfinder --root $(DATA_PATH) --resolution 128 --n $(PATHX_N)

download: install
	$(DATA_CLI) download lra --root $(DATA_PATH)
	$(DATA_CLI) download imdb --root $(DATA_PATH)
	$(DATA_CLI) download cifar10 --root $(DATA_PATH)

# --- Reports (experiments/README.md) ------------------------------------------------------------------------
RUNS ?= outputs
.PHONY: report
report: install
	$(PY) -m s5lra.report $(RUNS) --out experiments/results

# --- Reduced-scale runs on CPU (experiments/README.md, "Reduced-scale runs") ---------------------------------
.PHONY: smoke-lra reduced-listops
smoke-lra: install
	$(PY) experiments/smoke_lra.py $(ARGS)

reduced-listops: install
	$(PY) run_train.py experiment=reduced/listops paths.data_dir=$(DATA_PATH) logger=none $(ARGS)
	$(PY) -m s5lra.report outputs/reduced/listops --out experiments/results/reduced_listops

# --- The S5 family on CPU (experiments/README.md, "The S5 family") ------------------------------------------
# S5, S5-PTD, S4D-Lin, S4D-Inv, LRU and selective S5 on short and long reduced ListOps, two seeds each
# (about 1.5 hours on a 2-core CPU); report in experiments/results/zoo_reduced/. Extra overrides in ARGS.
.PHONY: zoo-reduced
zoo-reduced: install
	$(PY) experiments/zoo_reduced.py --data-dir $(DATA_PATH) $(ARGS)
