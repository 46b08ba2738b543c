# Two commands do all the set-up: `make run` (the main job on embedded defaults)
# and `make test` (installs what the tests need, starts it, runs lint and the suite).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint system-packages bench clean

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
# workers than cores pay (measured: docs/decisions/055-parallel-test-workers.md).
TEST_WORKERS ?= 6

test: $(STAMP) system-packages lint
	scripts/with-test-services.sh $(VENV)/bin/pytest -n $(TEST_WORKERS) --junitxml=build/test-results.xml

# The inner loop: lint and every test that needs no end-to-end stack, Wine or PostgreSQL.
.PHONY: test-fast
test-fast: $(STAMP) lint
	$(VENV)/bin/pytest -n $(TEST_WORKERS) -m "not e2e and not wine and not postgres"

bench: $(STAMP) system-packages
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) build .pytest_cache .ruff_cache
