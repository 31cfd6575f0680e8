# tagrules: `make demo` and `make test` work on a machine with only python3 and make.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
DEMO_DIR := build/demo
NOW := 2026-06-01T00:00:00Z
LATER := 2026-07-01T00:00:00Z
DEMO_STORE := sqlite:///$(DEMO_DIR)/tagrules.db
# The exact versions `make test` installs (pyproject.toml keeps the library's ranges); `make lock`
# refreshes them, `make test-latest` tests against the newest releases instead.
LOCK := requirements/test.txt
CONSTRAINTS ?= -c $(LOCK)
PIP_SPEC ?= pip==26.3
UV_VERSION := 0.13.9

.DEFAULT_GOAL := help
.PHONY: help install install-test demo test test-latest lock lint typecheck unit docs bench test-differential test-pushdown test-duckdb test-spark parser-tables clean

help:
	@echo "make demo    - install into $(VENV), tag the retail sample customers, store them, show what changes"
	@echo "make test    - install the locked test set ($(LOCK)); run ruff, mypy --strict, import contracts, tests, docs"
	@echo "make test-latest - the same tests in .venv-latest, against the newest releases pyproject.toml allows"
	@echo "make lock    - refresh $(LOCK) from pyproject.toml (uv pip compile, every Python >= 3.10)"
	@echo "make bench   - run the benchmarks and print their tables"
	@echo "make test-differential - the compiler against the interpreter, long profile (>= 100,000 cases)"
	@echo "make test-pushdown - SQL push-down against Python on SQLite, PostgreSQL, MariaDB, long profile"
	@echo "make test-duckdb - SQL push-down against Python on DuckDB, long profiles (1,000 pushed rules x 10,000 rows)"
	@echo "make test-spark - Spark against Python, long profiles (1,000 pushed rules x 10,000 rows; the diff over runs)"
	@echo "make parser-tables - recompute rule-engine's parser tables (after upgrading rule-engine)"
	@echo "make clean   - remove $(VENV), build/ and caches"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet $(PIP_SPEC)

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(PIP) install --quiet $(CONSTRAINTS) -e '.[report]'
	@touch $@

$(VENV)/.installed-test: $(BIN)/python pyproject.toml examples/tagrules-loyalty/pyproject.toml $(LOCK)
	$(PIP) install --quiet $(CONSTRAINTS) -e '.[test]' -e examples/tagrules-loyalty
	@# the report's browser test runs in Debian's Chromium
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq chromium >/dev/null) || echo "chromium could not be installed; the browser test will say so"
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
	@rm -f $(DEMO_DIR)/tagrules.db $(DEMO_DIR)/tagrules.db-wal $(DEMO_DIR)/tagrules.db-shm
	@echo "--- first run: the tags of the 12 customers kept in $(DEMO_DIR)/tagrules.db"
	$(BIN)/tagrules run retail $(DEMO_DIR)/customers.jsonl --store $(DEMO_STORE) --now $(NOW)
	@echo "--- a month later: 30-day windows roll over, C0000001 starts buying, C0000003 spends big, C0000012 complains"
	$(BIN)/python examples/a_month_later.py $(DEMO_DIR)/customers.jsonl > $(DEMO_DIR)/customers-later.jsonl
	$(BIN)/tagrules run retail $(DEMO_DIR)/customers-later.jsonl --store $(DEMO_STORE) --now $(LATER) --changes $(DEMO_DIR)/changes.jsonl
	@echo "--- the changes of the second run ($(DEMO_DIR)/changes.jsonl):"
	@cat $(DEMO_DIR)/changes.jsonl
	@echo "--- the tag history of C0000012:"
	$(BIN)/tagrules history --store $(DEMO_STORE) --id C0000012
	@echo "--- active customers on $(NOW), and now:"
	$(BIN)/tagrules members --store $(DEMO_STORE) --tag active --as-of $(NOW)
	$(BIN)/tagrules members --store $(DEMO_STORE) --tag active
	@echo "--- the tags over time, week by week, as an HTML report:"
	$(BIN)/tagrules report --store $(DEMO_STORE) --catalog retail --every week --until $(LATER) --output $(DEMO_DIR)/report.html

lock: $(BIN)/python
	$(PIP) install --quiet uv==$(UV_VERSION)
	$(BIN)/uv pip compile pyproject.toml --extra test --universal --python-version 3.10 --upgrade --quiet -o $(LOCK)

test-latest:
	rm -rf .venv-latest
	$(MAKE) test VENV=.venv-latest CONSTRAINTS= PIP_SPEC='--upgrade pip'

lint: install-test
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples

typecheck: install-test
	$(BIN)/mypy
	$(BIN)/lint-imports

# the suite in parallel (pytest-xdist, one worker per core; each worker has its own scratch
# databases); the slowest tests are listed at the end. The sources are byte-compiled first: the
# suite starts hundreds of tagrules processes, which would otherwise each compile the package again
# where writing bytecode is turned off (PYTHONDONTWRITEBYTECODE)
unit: install-test
	$(BIN)/python -m compileall -q src examples/tagrules-loyalty/src
	$(BIN)/pytest -n auto --dist worksteal --durations=30

docs: install-test
	$(BIN)/mkdocs build --strict --quiet --site-dir build/site

# the type check runs beside the tests (they wait on the databases as much as on the cores)
test: lint
	$(MAKE) --no-print-directory -j2 typecheck unit
	$(MAKE) --no-print-directory docs

bench: install-test
	$(BIN)/python -m benchmarks

test-differential: install-test
	HYPOTHESIS_PROFILE=long $(BIN)/pytest -p no:cacheprovider tests/test_compiler_differential.py

test-pushdown: install-test
	HYPOTHESIS_PROFILE=long $(BIN)/pytest -p no:cacheprovider -s tests/test_pushdown_differential.py

test-duckdb: install-test
	HYPOTHESIS_PROFILE=long $(BIN)/pytest -p no:cacheprovider -s tests/test_pushdown_differential.py tests/test_duckdb.py -k "duckdb or OncePerRow or ManyRulesOverManyRows"

test-spark: install-test
	HYPOTHESIS_PROFILE=long $(BIN)/pytest -p no:cacheprovider -s tests/test_spark.py -k "Differential or PopulationDiff"

# rule-engine's parser tables, computed once (src/tagrules/_parsetab.py; see src/tagrules/_parser_tables.py)
parser-tables: install-test
	rm -f src/tagrules/_parsetab.py
	$(BIN)/python -c "import rule_engine; from rule_engine._vendor.ply import yacc; \
		yacc.yacc(module=rule_engine.Rule.parser, debug=False, write_tables=True, outputdir='src/tagrules', tabmodule='_parsetab')"

clean:
	rm -rf $(VENV) .venv-latest build .mypy_cache .pytest_cache .ruff_cache .hypothesis
