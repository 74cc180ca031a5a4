# Quick start: `make study` runs the study on the embedded model; `make test` runs every check CI runs.
# Both create the virtual environment (.venv) from pyproject.toml + requirements.lock when it is missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Extra arguments for Snakemake, e.g. `make study ARGS="--configfile config/test-config.yaml"`.
ARGS ?=

.PHONY: venv system study test test-fast lint format clean

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip>=24"
	$(BIN)/pip install --quiet -c requirements.lock -e ".[test]"
	touch $(STAMP)

venv: $(STAMP)

# Debian packages the tests need (headless chromium for the appendix test), installed if missing.
system:
	bash scripts/system-packages.sh

study: venv
	$(BIN)/snakemake $(ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check workflow/Snakefile workflow/rules
	$(BIN)/snakemake --lint --configfile config/test-config.yaml
	$(BIN)/snakemake --lint

test: lint system
	$(BIN)/pytest

test-fast: venv
	$(BIN)/pytest -m "not slow"

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
	$(BIN)/snakefmt workflow/Snakefile workflow/rules

clean:
	rm -rf results reports logs benchmarks .snakemake
