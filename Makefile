# tagrules: `make demo` and `make test` work on a machine with only python3 and make.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
DEMO_DIR := build/demo
NOW := 2026-06-01T00:00:00Z

.DEFAULT_GOAL := help
.PHONY: help install install-test demo test lint typecheck unit docs bench test-differential test-pushdown clean

help:
	@echo "make demo    - install into $(VENV) and tag the retail sample customers"
	@echo "make test    - install with test extras; run ruff, mypy --strict, import contracts, tests, docs"
	@echo "make bench   - run the benchmarks and print their tables"
	@echo "make test-differential - the compiler against the interpreter, long profile (>= 100,000 cases)"
	@echo "make test-pushdown - SQL push-down against Python on SQLite, PostgreSQL, MariaDB, long profile"
	@echo "make clean   - remove $(VENV), build/ and caches"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(PIP) install --quiet -e .
	@touch $@

$(VENV)/.installed-test: $(BIN)/python pyproject.toml
	$(PIP) install --quiet -e '.[test]'
	@touch $@ $(VENV)/.installed

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

demo: install
	@mkdir -p $(DEMO_DIR)
	$(BIN)/tagrules validate retail
	$(BIN)/tagrules sample --pack retail --count 12 --seed 1 --output $(DEMO_DIR)/customers.jsonl
	$(BIN)/tagrules evaluate retail $(DEMO_DIR)/customers.jsonl --now $(NOW) --output $(DEMO_DIR)/tags.jsonl
	@echo "--- tags assigned to the 12 sample customers ($(DEMO_DIR)/tags.jsonl):"
	@cat $(DEMO_DIR)/tags.jsonl
	@echo "--- why C0000003 is or is not VIP:"
	$(BIN)/tagrules explain retail $(DEMO_DIR)/customers.jsonl --id C0000003 --tag vip --now $(NOW)

lint: install-test
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: install-test
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: install-test
	$(BIN)/pytest

docs: install-test
	$(BIN)/mkdocs build --strict --quiet --site-dir build/site

test: lint typecheck unit docs

bench: install-test
	$(BIN)/python -m benchmarks

test-differential: install-test
	HYPOTHESIS_PROFILE=long $(BIN)/pytest -p no:cacheprovider tests/test_compiler_differential.py

test-pushdown: install-test
	HYPOTHESIS_PROFILE=long $(BIN)/pytest -p no:cacheprovider -s tests/test_pushdown_differential.py

clean:
	rm -rf $(VENV) build .mypy_cache .pytest_cache .ruff_cache .hypothesis
