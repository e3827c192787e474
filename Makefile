# Set-up and everyday commands. Every target creates the venv and installs what it needs.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
TORCH   ?= torch==2.13.0
STAMP   := $(VENV)/.installed

.PHONY: venv install test test-all test-slow demo docs bench bench-layers bench-estimators bench-executors bench-pto bench-all gpu-check lint clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# torch first (the local CPU build), then the package: the range in pyproject stays user-friendly.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

venv install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" tests

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow tests

test-all: $(STAMP)
	$(BIN)/python -m pytest -q tests

demo: $(STAMP)
	$(BIN)/discreteopt route

# API reference and guides (MkDocs + mkdocstrings), strict: any warning fails the build; output in build/site
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_solvers.py

bench-layers bench-estimators bench-executors bench-pto: bench-%: $(STAMP)
	$(BIN)/python benchmarks/bench_$*.py

# everything that needs a GPU, one command, at most 8 minutes (internal budget 420 s; timeout is the last resort):
# results in $(GPU_CHECK_OUT)/<timestamp>/ (results.json, summary.md). CPU smoke run: add GPU_CHECK_ARGS="--device cpu --quick"
# No install step (a device machine brings its own CUDA build of torch): the venv's python if there is one, else python3.
GPU_CHECK_OUT  ?= runs/gpu_check
GPU_CHECK_ARGS ?=
GPU_CHECK_PY   ?= $(if $(wildcard $(BIN)/python),$(BIN)/python,python3)
gpu-check:
	timeout --signal=INT --kill-after=10 480 $(GPU_CHECK_PY) benchmarks/gpu_check.py --out $(GPU_CHECK_OUT) $(GPU_CHECK_ARGS)

# every benchmark, one after the other (tens of minutes on 2 cores)
bench-all: $(STAMP)
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

lint: $(STAMP)
	$(BIN)/ruff check discreteopt tests benchmarks examples

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
