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

test: $(STAMP) system-packages lint
	scripts/with-test-services.sh $(VENV)/bin/pytest

bench: $(STAMP) system-packages
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) build .pytest_cache .ruff_cache
