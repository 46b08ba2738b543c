#!/usr/bin/env bash
# Starts the wineserver of $WINEPREFIX detached and boots the prefix, before any test runs.
# Wine's background processes (wineserver, services.exe, winedevice.exe) inherit the stdio of
# whoever starts them first; if that is a test's `wine python.exe` with pipes, the pipes
# never reach EOF. Started here with /dev/null, they hold nothing of ours.
set -euo pipefail
: "${WINEPREFIX:?run eval \"\$(scripts/wine-prepare.sh)\" first}"
export WINEARCH=win64 WINEDEBUG=-all
unset DISPLAY
# -p: persistent until wine-cleanup.sh's `wineserver -k`, so no test pays a restart.
wineserver -p </dev/null >/dev/null 2>&1
wine wineboot </dev/null >/dev/null 2>&1
