# Two commands do all the set-up: `make run` (the main job on embedded defaults)
# and `make test` (installs what the tests need, starts it, runs lint and the suite).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint system-packages bench clean msi screenshots

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
# TRUSTED_ROOT=path/to/root.json: the MSI ships the control plane's TUF root and the keepers
# it installs verify every download against it (decision 086); without it, it ships none.
TRUSTED_ROOT ?=
msi: $(STAMP) system-packages
	$(PY) installer/build.py --out dist $(if $(TRUSTED_ROOT),--trusted-root "$(TRUSTED_ROOT)")

# The tray app's screens as PNG files for readers (docs/screenshots/), taken by the window
# tests under their own Xvfb (decision 071): a keeper with updates and a rollout on
# its way to the node (status, problems, updates, settings), and a keeper whose node needs
# setup (set-up, wizard-errors); and the Windows side under Wine (decisions 072, 073): the
# runtime's Tk, and the real tray app's Set up screen on an 800x600 Wine desktop; and the
# control plane's dashboard in headless chromium (decision 080): dashboard-*.png.
screenshots: $(STAMP) system-packages
	NODEKEEPER_SCREENSHOTS=docs/screenshots scripts/with-test-services.sh $(VENV)/bin/pytest -q \
		tests/server/dashboard/test_browser.py \
		tests/tray/test_window_updates.py::test_the_screens_of_a_node_in_a_rollout \
		tests/tray/test_window_setup.py \
		tests/windows/test_tray_wine.py::test_the_runtimes_tk_opens_a_window_on_the_x_display \
		tests/windows/test_tray_wine.py::test_the_tray_app_shows_the_whole_set_up_screen_on_an_800x600_desktop

bench: $(STAMP) system-packages
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) build dist .pytest_cache .ruff_cache
