"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

# One Wine prefix and wineserver per session, shared by every suite that runs Windows code.
from tests.windows.wine import wine  # noqa: F401


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
