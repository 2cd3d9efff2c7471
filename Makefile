# Two commands matter: `make demo` (the whole flow on the embedded local stack) and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
INFRA_STAMP := $(VENV)/.infra-schemas-stamp

.PHONY: install demo up test lint typecheck unit integration chaos bench clean

$(STAMP): requirements.txt functions/requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "Python 3.11 is required")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements.txt
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps -e .
	@touch $@

install: $(STAMP)

# Only the tests need the Terraform provider schemas (requirements-infra.txt); bytecode is not compiled
# for their ~340 MB of generated Python, which is only read as data.
$(INFRA_STAMP): $(STAMP) requirements-infra.txt
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-compile -r requirements-infra.txt
	@touch $@

demo: install
	NO_GCE_CHECK=true $(BIN)/arc demo

up: install
	NO_GCE_CHECK=true $(BIN)/arc local up

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	@if command -v shellcheck >/dev/null; then shellcheck orchestrator/*.sh .ci/run $$(ls scripts/*.sh 2>/dev/null); \
	else echo "shellcheck not installed: shell scripts not checked"; fi

test: lint $(INFRA_STAMP)
	NO_GCE_CHECK=true $(BIN)/pytest -q

unit: install $(INFRA_STAMP)
	NO_GCE_CHECK=true $(BIN)/pytest -q tests/unit

integration: install
	NO_GCE_CHECK=true $(BIN)/pytest -q -m integration

chaos: install  # the attack suite at full scale (make test runs it bounded); one JSON line of figures
	CHAOS_SCALE=full NO_GCE_CHECK=true $(BIN)/pytest -q -m chaos tests/chaos

bench: install  # each prints one JSON line of figures
	NO_GCE_CHECK=true $(BIN)/python bench/cold_start.py
	NO_GCE_CHECK=true $(BIN)/python bench/submit.py
	NO_GCE_CHECK=true $(BIN)/python bench/submit.py --burst
	NO_GCE_CHECK=true $(BIN)/python bench/reconcile.py
	NO_GCE_CHECK=true BENCH_TRAFFIC=live $(BIN)/python bench/reconcile.py
	NO_GCE_CHECK=true BENCH_MEMO=off $(BIN)/python bench/reconcile.py
	NO_GCE_CHECK=true $(BIN)/python bench/list_runs.py
	NO_GCE_CHECK=true $(BIN)/python bench/ledger.py
	NO_GCE_CHECK=true $(BIN)/python bench/tasks.py
	NO_GCE_CHECK=true $(BIN)/python bench/dashboard.py
	NO_GCE_CHECK=true $(BIN)/python bench/snakemake_fanout.py

clean:
	rm -rf $(VENV) .arc .pytest_cache .mypy_cache .ruff_cache
