# Two commands do all the set-up: `make run` (the main job on embedded defaults)
# and `make test` (installs what the tests need, starts it, runs lint and the suite).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint system-packages bench clean msi

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -U pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/nodekeeper quickstart

system-packages:
	scripts/install-system-packages.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache

# Workers for pytest-xdist: the tests mostly wait on child processes and sockets, so more
# workers than cores pay (measured: docs/decisions/055-parallel-test-workers.md). The
# inner loop's tests wait less, and each worker collects the whole suite: 4 is faster.
TEST_WORKERS ?= 6
TEST_FAST_WORKERS ?= 4

# Bytecode caching on for the tests, even where the environment turns it off: without it
# every xdist worker re-rewrites the asserts of all test modules (collection 5.6 s -> 2.6 s)
# and every child `python -m nodekeeper` compiles its imports again.
unexport PYTHONDONTWRITEBYTECODE

test: $(STAMP) system-packages lint
	scripts/with-test-services.sh $(VENV)/bin/pytest -n $(TEST_WORKERS) --junitxml=build/test-results.xml

# The inner loop: lint and every test that needs no end-to-end stack, Wine or PostgreSQL.
.PHONY: test-fast
test-fast: $(STAMP) lint
	$(VENV)/bin/pytest -n $(TEST_FAST_WORKERS) -m "not e2e and not wine and not postgres"

# The Windows installer, built here on Linux: dist/nodekeeper-<version>-x64.msi (decision 066).
msi: $(STAMP) system-packages
	$(PY) installer/build.py --out dist

bench: $(STAMP) system-packages
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) build dist .pytest_cache .ruff_cache
