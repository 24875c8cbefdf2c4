# codepool: `make run` serves the API (with its own Redis), `make test` runs the suite.
# Needs only a Python >= 3.11 (PYTHON=...); everything else goes into .venv.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Touched after a successful install: the venv is rebuilt only when pyproject.toml changes
# (or an install failed half-way, as the stamp is then missing).
STAMP := $(VENV)/.installed

PYTEST_ARGS ?=
BENCH_ARGS ?=
LOCUST_ARGS ?=
SERVE_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help venv run test lint fmt clean bench loadtest

help:
	@echo "make venv    create .venv with codepool and its dev tools"
	@echo "make run     serve the API on 127.0.0.1:8000 (SERVE_ARGS='--port 9000 --workers 2')"
	@echo "make test    run the tests (PYTEST_ARGS='-m \"not e2e\" -x')"
	@echo "make bench   throughput/latency/memory figures (BENCH_ARGS='--codes 1000000')"
	@echo "make loadtest  locust flash-sale scenario, HTML report in reports/ (LOCUST_ARGS='--shape SteadyShape')"
	@echo "make lint    ruff check, ruff format --check, mypy"
	@echo "make fmt     ruff format and fix what ruff can"
	@echo "make clean   remove .venv and caches (keeps var/, the data)"

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| { echo "codepool needs Python >= 3.11: run make with PYTHON=python3.11 (or newer)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

# Only `run` gets these: tests must not inherit a developer's settings.
run: export CODEPOOL_ROOT_KEY ?= dev-root-key
# Development mode: the short key above is warned about instead of refused.
run: export CODEPOOL_DEV ?= 1
run: export CODEPOOL_DATA_DIR ?= ./var
run: venv
	$(BIN)/codepool serve $(SERVE_ARGS)

test: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: venv
	$(BIN)/python -m loadtest.bench $(BENCH_ARGS)

loadtest: venv
	$(BIN)/python -m loadtest.run_locust $(LOCUST_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

fmt: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache dist build reports
	find . -name '*.egg-info' -prune -exec rm -rf {} +
	find . -name __pycache__ -prune -exec rm -rf {} +
