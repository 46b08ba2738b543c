#!/usr/bin/env bash
# Starts the wineserver of $WINEPREFIX detached and boots the prefix, before any test runs.
# Wine's background processes (wineserver, services.exe, winedevice.exe) inherit the stdio of
# whoever starts them first; if that is a test's `wine python.exe` with pipes, the pipes
# never reach EOF. Started here with /dev/null, they hold nothing of ours.
set -euo pipefail
: "${WINEPREFIX:?run eval \"\$(scripts/wine-prepare.sh)\" first}"
here=$(cd "$(dirname "$0")" && pwd)
export WINEARCH=win64 WINEDEBUG=-all
unset DISPLAY
# -p: persistent until wine-cleanup.sh's `wineserver -k`. A server that timed out between
# two tests would be restarted by the next test's `wine`, holding that test's pipes.
wineserver -p </dev/null >/dev/null 2>&1
wine wineboot </dev/null >/dev/null 2>&1
# A persistent server outlives a test run that is killed before its cleanup (SIGKILL, a
# timeout's SIGTERM). This watcher waits for the run's owner (the shell of `make test`, or
# the pytest process that prepared the prefix itself) and then cleans up; its own session,
# so that a Ctrl-C to the run's process group does not take it along.
owner=${NODEKEEPER_WINE_OWNER_PID:-$PPID}
setsid bash -c 'while kill -0 "$1" 2>/dev/null; do sleep 2; done; exec "$2"' \
  wine-watch "$owner" "$here/wine-cleanup.sh" </dev/null >/dev/null 2>&1 &
