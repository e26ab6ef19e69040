# driftlab: `make demo` runs the quickstart experiment end to end; `make test` runs the tests.
# Both create .venv and install what they need on first use (idempotent: a stamp
# file records that the pinned set is installed, so later calls start at once).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
CONFIG ?= examples/quickstart.yaml
PYTEST_ARGS ?=
# Two test processes: a pipeline test keeps about one core busy (kfp.local tasks start one after
# another), so two of them fill a 2-core machine. `make test PYTEST_JOBS=0` runs in one process.
PYTEST_JOBS ?= 2
PYTEST_XDIST := $(if $(filter 0,$(PYTEST_JOBS)),-p no:xdist,-n $(PYTEST_JOBS) --dist worksteal)

export TF_CPP_MIN_LOG_LEVEL ?= 2
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: demo test test-fast bench venv compile clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/driftlab run $(CONFIG)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_XDIST) $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest $(PYTEST_XDIST) -m "not slow" $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

compile: $(STAMP)
	$(VENV)/bin/driftlab compile --output pipelines/driftlab.yaml

clean:
	rm -rf .driftlab local_outputs .pytest_cache
