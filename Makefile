# Two entry points: `make run` and `make test`. Everything else is plumbing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/proactord --pidfile= -n proactor $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

# The suite under pytest, then the testing kit's own tests under trial too.
test: lint
	$(BIN)/python -m pytest -q
	$(BIN)/python -m twisted.trial --reactor=asyncio --temp-directory=$(VENV)/_trial_temp \
		tests/test_kit_trial.py

BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $(BENCH_STAMP)

# Side by side with circus, supervisord and procmon: prints one table, writes
# benchmarks/results.json. Under 10 minutes; pass ARGS="--rounds 1" for a quick look.
bench: $(BENCH_STAMP)
	$(BIN)/python -P benchmarks/bench.py $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info twisted/plugins/dropin.cache
