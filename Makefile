PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test e2e chaos browser package soak check lint typecheck contracts clean bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/saga demo

test: $(STAMP)
	$(BIN)/pytest -q

# Real coordinator and participant processes, and throwaway servers (tests/e2e,
# not part of `make test`): crashes, restarts, TLS, tracing across processes.
e2e: $(STAMP)
	$(BIN)/pytest -q tests/e2e

# The chaos suite (tests/chaos, not part of `make test`): faults injected between
# real processes and the servers. Each test has its own timeout; the whole suite
# is cut off after CHAOS_LIMIT seconds.
CHAOS_LIMIT ?= 2400
chaos: $(STAMP)
	timeout $(CHAOS_LIMIT) $(BIN)/pytest -q -rP tests/chaos

# The dashboard's browser tests (tests/dashboard, not part of `make test`):
# Playwright driving Debian's chromium (/usr/bin/chromium) against real servers.
browser: $(STAMP)
	$(BIN)/pytest -q tests/dashboard

# The built wheel (tests/package, not part of `make test`): installed with its
# dependencies in a fresh venv, where `saga demo` and `saga init` + its test run.
package: $(STAMP)
	$(BIN)/pytest -q tests/package

# The end-to-end and chaos suites SOAK times; prints each test's failure count.
SOAK ?= 5
soak: $(STAMP)
	rm -rf .soak && mkdir -p .soak
	for i in $$(seq 1 $(SOAK)); do \
	  echo "== soak round $$i of $(SOAK)"; \
	  $(BIN)/pytest -q tests/e2e tests/chaos --junitxml=.soak/round-$$i.xml || true; \
	done
	$(BIN)/python tests/tally.py .soak/round-*.xml

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy
	$(BIN)/lint-imports

check: lint typecheck test

contracts: $(STAMP)
	$(BIN)/saga contracts --json-schema

bench: $(STAMP)
	$(BIN)/pip install -q -r bench/requirements.txt
	$(BIN)/python -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis .soak
