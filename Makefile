# s5lra: `make demo` (set up, generate a small ListOps, train on CPU) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
DATA_PATH ?= ./data

.PHONY: install test test-slow demo clean

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

test: install
	$(PY) -m pytest -q

test-slow: install
	$(PY) -m pytest -q -m slow

demo: install
	$(PY) run_train.py paths.data_dir=$(DATA_PATH)

clean:
	rm -rf $(VENV) src/*.egg-info
