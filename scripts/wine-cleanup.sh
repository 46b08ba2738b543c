#!/usr/bin/env bash
# Kills this run's wineserver (and with it every Windows process of the prefix) and removes
# the run's prefix copy. Touches only the prefix named by $WINEPREFIX / the run dir.
set -uo pipefail
run=${NODEKEEPER_WINE_RUN_DIR:-}
if [ -n "${WINEPREFIX:-}" ] && [ -d "$WINEPREFIX" ]; then
  wineserver -k </dev/null >/dev/null 2>&1
  timeout 10 wineserver -w </dev/null >/dev/null 2>&1
fi
if [ -n "$run" ] && [ -e "$run/.nodekeeper-wine-run" ]; then
  rm -rf "$run"
fi
exit 0
