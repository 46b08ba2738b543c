"""A throw-away PostgreSQL cluster, or a fresh database on the one the tests run.

`scripts/with-test-services.sh` starts a cluster for the suite and exports
NODEKEEPER_TEST_PG_URL; a bench run on its own has none, so `ThrowawayPostgres` does the
same steps from Python (initdb as the postgres user when run as root, pg_ctl on a free
loopback port, fsync off because nothing here must survive a power cut) and removes the
cluster on stop. `fresh_database` makes an empty database on either.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import psutil
import sqlalchemy as sa

from tests.support import free_port


def _pg_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[4]))
    if not found or not (Path(found[-1]) / "initdb").exists():
        raise RuntimeError("PostgreSQL server binaries not found: run `make system-packages`")
    return Path(found[-1])


class ThrowawayPostgres:
    """initdb + pg_ctl start on a free port; stop() stops it and deletes its files."""

    def __init__(self, settings: dict[str, str] | None = None) -> None:
        self.bin = _pg_bin()
        self.port = free_port()
        self.work = Path(tempfile.mkdtemp(prefix="nk-pg-"))
        self.settings = {"fsync": "off", "max_connections": "200", **(settings or {})}
        self._as_pg: list[str] = []

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://nodekeeper@127.0.0.1:{self.port}/postgres"

    def start(self) -> ThrowawayPostgres:
        self.work.chmod(0o755)
        if os.geteuid() == 0:  # initdb refuses to run as root
            shutil.chown(self.work, "postgres", "postgres")
            self._as_pg = ["runuser", "-u", "postgres", "--"]
        data = self.work / "data"
        self._run(
            str(self.bin / "initdb"), "-D", str(data), "-U", "nodekeeper", "--auth=trust",
            "-E", "UTF8",
        )  # fmt: skip
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.work}"
        options += "".join(f" -c {k}={v}" for k, v in self.settings.items())
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(data), "-l", str(self.work / "pg.log"), "-w",
            "-o", options, "start",
        )  # fmt: skip
        return self

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as_pg, *args], check=True, capture_output=True)

    def pids(self) -> list[int]:
        """The postmaster and every backend and helper process under it."""
        pidfile = self.work / "data" / "postmaster.pid"
        try:
            main = psutil.Process(int(pidfile.read_text().split()[0]))
        except (OSError, ValueError, psutil.NoSuchProcess):
            return []
        return [main.pid, *(c.pid for c in main.children(recursive=True))]

    def stop(self) -> None:
        data = self.work / "data"
        if data.exists():
            subprocess.run(
                [*self._as_pg, str(self.bin / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"],
                capture_output=True,
            )
        shutil.rmtree(self.work, ignore_errors=True)

    def __enter__(self) -> ThrowawayPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def fresh_database(base_url: str) -> str:
    """CREATE DATABASE on the server of ``base_url``; returns the new database's URL."""
    name = f"nk_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f"CREATE DATABASE {name}"))
    finally:
        admin.dispose()
    return base_url.rsplit("/", 1)[0] + f"/{name}"


def drop_database(url: str) -> None:
    base, name = url.rsplit("/", 1)
    admin = sa.create_engine(base + "/postgres", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    finally:
        admin.dispose()
