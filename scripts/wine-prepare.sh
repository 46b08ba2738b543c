#!/usr/bin/env bash
# Prepares a private Wine prefix with the Windows runtime for one test run and prints the
# environment for it as `export` lines (use: eval "$(scripts/wine-prepare.sh)").
#
# Both expensive parts are cached and reused (under $NODEKEEPER_CACHE_DIR, default
# ~/.cache/nodekeeper): the runtime (scripts/windows-runtime.py) and a freshly booted
# prefix template per Wine version. Each run gets its own copy, hard-linked (instant), so
# that runs never share a wineserver: `wineserver -k` at the end of one run cannot kill
# another engineer's Windows processes. The runtime inside it sees our source tree
# through a .pth file, so code edits need no rebuild.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$root/.venv/bin/python}
cache=${NODEKEEPER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/nodekeeper}
command -v wine >/dev/null || { echo "wine not found: run make system-packages" >&2; exit 1; }
export WINEARCH=win64 WINEDEBUG=-all
unset DISPLAY  # the console runtime needs no X; without this Wine may try to open one

# 1. The runtime, cached by the builder itself (keyed by its inputs). First, so that a
#    failed build (no network) leaves nothing behind.
embed_args=()
[ -n "${NODEKEEPER_WINDOWS_EMBED_ZIP:-}" ] && embed_args=(--embed-zip "$NODEKEEPER_WINDOWS_EMBED_ZIP")
runtime_cache=$("$python" "$root/scripts/windows-runtime.py" "${embed_args[@]}")

# 2. The prefix template, booted once per Wine version, shim set and boot options: no Wine
#    Mono / Gecko (their installers would try to download them), no menu entries in $HOME.
init_overrides="mscoree=;mshtml=;winemenubuilder.exe=d"
wine_version=$(wine --version | tr -c 'A-Za-z0-9.\n' '-')
template_hash=$({ cat "$root/scripts/wine-shims.py"; echo "$init_overrides"; } | sha256sum | cut -c1-8)
templates=$cache/wine-prefix
template=$templates/$wine_version-$template_hash
mkdir -p "$templates"
exec 9>"$templates/.lock"
flock 9  # two runs starting at once build the template once
if [ ! -e "$template/.nodekeeper-complete" ]; then
  started=$SECONDS
  partial=$(mktemp -d "$templates/.build-XXXXXX")
  # Detached from our stdio: wineserver would otherwise hold the caller's pipes open.
  WINEPREFIX=$partial WINEDLLOVERRIDES=$init_overrides wine wineboot --init \
    </dev/null >/dev/null 2>&1
  # Wait until the server has flushed the registry and exited on its own.
  WINEPREFIX=$partial timeout 120 wineserver -w </dev/null >/dev/null 2>&1
  rm -f "$partial/wineserver"
  "$python" "$root/scripts/wine-shims.py" "$partial"  # DLLs this Wine lacks (see there)
  touch "$partial/.nodekeeper-complete"
  mv "$partial" "$template"
  # Older templates (other Wine or shims) are ~700 MB each; runs already copied theirs.
  find "$templates" -mindepth 1 -maxdepth 1 -type d ! -path "$template" -exec rm -rf {} +
  echo "wine-prepare: booted prefix template $template in $((SECONDS - started)) s" >&2
fi

# 3. This run's copy, made under the lock so that no other run prunes the template while
#    it is being copied. Hard links are safe: Wine saves the registry by writing a new
#    file and renaming it, but the run still gets real copies of the few top-level files
#    Wine rewrites; everything else is only ever read or added to.
run=$(mktemp -d "${TMPDIR:-/tmp}/nodekeeper-wine.XXXXXX")
trap 'rm -rf "$run"' ERR  # a failure from here on leaves no half-made run behind
touch "$run/.nodekeeper-wine-run"  # wine-cleanup.sh removes only dirs that carry this
prefix=$run/prefix
cp -al "$template" "$prefix" 2>/dev/null || cp -a "$template" "$prefix"
flock -u 9
for f in "$prefix"/*.reg "$prefix"/.update-timestamp; do
  cp -p "$f" "$f.copy" && mv "$f.copy" "$f"
done

# 4. Bytecode for the runtime's packages, compiled once into the cache by the runtime
#    itself (pip compiled nothing: the host's Python is another version). Saves every run
#    ~10 s of first imports. Not `-j`: multiprocessing's spawn hangs under Wine.
if [ ! -e "$runtime_cache/.compiled-under-wine" ]; then
  exec 8>"$runtime_cache/.compile-lock"
  flock 8
  if [ ! -e "$runtime_cache/.compiled-under-wine" ]; then
    win_cache="Z:${runtime_cache//\//\\}"
    WINEPREFIX=$prefix wine "$win_cache\\python.exe" -m compileall -q \
      "$win_cache\\Lib\\site-packages" </dev/null >/dev/null 2>&1 || true
    WINEPREFIX=$prefix wineserver -k </dev/null >/dev/null 2>&1 || true
    touch "$runtime_cache/.compiled-under-wine"
  fi
  flock -u 8
fi

# 5. The runtime in the run's prefix, where an installed one would be.
runtime=$prefix/drive_c/nodekeeper/runtime
mkdir -p "$(dirname "$runtime")"
cp -al "$runtime_cache" "$runtime" 2>/dev/null || cp -a "$runtime_cache" "$runtime"
# _wmi.pyd makes platform.platform() crash Wine; a real Windows runtime keeps it.
[ -e "$runtime/_wmi.pyd" ] && mv "$runtime/_wmi.pyd" "$runtime/_wmi.pyd.disabled-under-wine"
# Our source tree, seen through Wine's Z: drive (the root of the Linux file system).
printf 'Z:%s\r\n' "${root//\//\\}\\src" >"$runtime/Lib/site-packages/nodekeeper-src.pth"

printf 'export WINEPREFIX=%q WINEARCH=win64 WINEDEBUG=-all\n' "$prefix"
printf 'export WINEDLLOVERRIDES=%q\n' "winemenubuilder.exe=d"
printf 'export NODEKEEPER_WINE_RUN_DIR=%q NODEKEEPER_WINE_RUNTIME=%q\n' "$run" "$runtime"
