# Quick start: `make study` runs the study on the embedded model; `make test` runs every check CI runs.
# Both create the virtual environment (.venv) from pyproject.toml + requirements.lock when it is missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Extra arguments for Snakemake, e.g. `make study ARGS="--configfile config/test-config.yaml"`.
ARGS ?=
# make test: parallel pytest processes (pytest-xdist: a process takes a whole test module at a time, so a
# module's fixtures are built once; tests/conftest.py starts the longest modules first) and the limit after
# which pytest is interrupted and reports where it was (CI's own hard limit is 90 minutes).
TEST_WORKERS ?= 2
TEST_TIMEOUT ?= 60m
TIMED := bash scripts/timed.sh

.PHONY: venv system study test test-fast lint format clean

$(STAMP): pyproject.toml requirements.lock
	$(TIMED) venv sh -c '$(PYTHON) -m venv $(VENV) && $(BIN)/pip install --quiet --upgrade "pip>=24" \
		&& $(BIN)/pip install --quiet -c requirements.lock -e ".[test]"'
	touch $(STAMP)

venv: $(STAMP)

# Debian packages the tests need (headless chromium for the appendix test, SLURM and munge for the cluster
# test), installed if missing (apt-get, as root or through sudo).
system:
	$(TIMED) system bash scripts/system-packages.sh

study: venv
	$(BIN)/snakemake $(ARGS)

lint: venv
	$(TIMED) lint sh -c '$(BIN)/ruff check . && $(BIN)/ruff format --check . \
		&& $(BIN)/snakefmt --check workflow/Snakefile workflow/rules \
		&& $(BIN)/snakemake --lint --configfile config/test-config.yaml && $(BIN)/snakemake --lint'

# Every check CI runs: the Debian packages install while the venv is built and linted, then the whole suite.
test:
	$(MAKE) --no-print-directory -j2 lint system
	$(TIMED) pytest timeout --signal=INT --kill-after=2m $(TEST_TIMEOUT) \
		$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

test-fast: venv
	$(BIN)/pytest -m "not slow"

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
	$(BIN)/snakefmt workflow/Snakefile workflow/rules

clean:
	rm -rf results reports logs benchmarks .snakemake
