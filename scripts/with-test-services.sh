#!/usr/bin/env bash
# Runs a command with the services the tests need: a throw-away PostgreSQL cluster on
# loopback. The cluster lives in a temp dir and is stopped and removed on exit.
# Also a private Wine prefix with the Windows runtime (tests/windows; runtime and prefix
# template cached between runs) whose wineserver is started before and killed after.
set -euo pipefail
scripts=$(cd "$(dirname "$0")" && pwd)
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -x "$pg_bin/initdb" ] || { echo "PostgreSQL server binaries not found: run make system-packages" >&2; exit 1; }
work=$(mktemp -d /tmp/nodekeeper-pg.XXXXXX)
chmod 755 "$work"
# A free port: several runs (a developer's and CI's) may share the machine.
port=${NODEKEEPER_TEST_PG_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
as_pg=()
[ "$(id -u)" -eq 0 ] && { chown postgres: "$work"; as_pg=(runuser -u postgres --); }
cleanup() {
  "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$work/data" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$work"
  "$scripts/wine-cleanup.sh" || true
}
trap cleanup EXIT
"${as_pg[@]}" "$pg_bin/initdb" -D "$work/data" -U nodekeeper --auth=trust -E UTF8 >/dev/null
"${as_pg[@]}" "$pg_bin/pg_ctl" -D "$work/data" -l "$work/pg.log" -w \
  -o "-c listen_addresses=127.0.0.1 -p $port -k $work -c fsync=off" start >/dev/null
export NODEKEEPER_TEST_PG_URL="postgresql+psycopg://nodekeeper@127.0.0.1:$port/postgres"
export NODEKEEPER_TEST_REQUIRE_PG=1
wine_env=$("$scripts/wine-prepare.sh")  # WINEPREFIX, NODEKEEPER_WINE_RUNTIME, ...
eval "$wine_env"
"$scripts/wine-start.sh"
export NODEKEEPER_TEST_REQUIRE_WINE=1
"$@"
