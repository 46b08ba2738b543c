"""Fixtures and collection rules shared by the whole suite (tests/README.md explains the
layers, the markers and the inner loop)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

# One Wine prefix and wineserver per run, shared by every suite that runs Windows code.
from tests.windows.wine import wine  # noqa: F401

# The longest tests bound the wall time under pytest-xdist: a 100 s test that starts last
# ends last. Under xdist they are collected first, so the first tests every worker gets
# are these, and the short ones fill in around them. Prefixes of node ids, longest first
# (from bench/slowest_tests.py); other e2e and Wine tests follow, then everything else.
LONGEST_FIRST = (
    "tests/windows/test_msi_wine.py::test_install_runs_the_service_until_stopped_upgraded_and",
    "tests/updater/test_crash.py::test_crash_at_every_step_and_random_instants",
    "tests/windows/test_msi_wine.py::test_a_silent_install_with_properties_sets_the_node_up",
    "tests/test_readme_path.py::test_running_it_for_real_as_the_readme_says",
    "tests/quickstart/test_end_to_end.py::",
    # 8 keepers and nodes (decision 079): 40-90 s by the machine's load.
    "tests/updater/test_auto_pause_fleet.py::",
    "tests/windows/test_firewall_wine.py::test_every_com_call_fails_cleanly_as_recorded",
    "tests/windows/test_msi_wine.py::test_a_bad_property_fails_the_install_and_changes_nothing",
    "tests/quickstart/test_terminal.py::",
    "tests/logs/test_flood.py::test_flood_never_exceeds_the_cap[1GB]",
    "tests/quickstart/test_lifecycle.py::test_second_run_ends_what_a_killed_first_run_left",
    "tests/selfupdate/test_wine.py::",
)


def _relative(item: pytest.Item) -> str:
    return item.nodeid.replace(os.sep, "/")


def _start_order(item: pytest.Item) -> tuple[int, int]:
    nodeid = _relative(item)
    for rank, prefix in enumerate(LONGEST_FIRST):
        if nodeid.startswith(prefix):
            return (0, rank)
    if item.get_closest_marker("e2e") or item.get_closest_marker("wine"):
        return (1, 0)
    return (2, 0)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        # What a test needs is known from its fixtures: the marker follows, so that
        # `-m "not wine and not postgres"` never starts a service it would wait for.
        fixtures = getattr(item, "fixturenames", ())
        if "wine" in fixtures:
            item.add_marker(pytest.mark.wine)
        if "pg_url" in fixtures:
            item.add_marker(pytest.mark.postgres)
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # Every worker collects and sorts alike (the controller checks that they agree);
        # a run without xdist keeps pytest's own order.
        items.sort(key=_start_order)


@pytest.fixture
def anyio_backend() -> str:
    """asyncio only: the harnesses (tests/updater/inprocess.py) run on asyncio, and anyio's
    plugin would otherwise also run every `anyio` test on trio once trio is installed
    (selenium, for the dashboard's browser test, brings it)."""
    return "asyncio"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database on the server `make test` started."""
    base = os.environ.get("NODEKEEPER_TEST_PG_URL")
    if not base:
        if os.environ.get("NODEKEEPER_TEST_REQUIRE_PG"):
            pytest.fail("NODEKEEPER_TEST_REQUIRE_PG is set but NODEKEEPER_TEST_PG_URL is not")
        pytest.skip("no PostgreSQL: run the suite through `make test`")
    import sqlalchemy as sa

    name = f"nk_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    try:
        yield base.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()
