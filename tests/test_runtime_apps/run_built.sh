#!/usr/bin/env bash
# Serve a test app from a forge-built binary, for running tests/test_runtime_server.py against
# compiled workloads instead of `python -m forge_runtime`:
#
#   FORGE_RUNTIME_SERVER_CMD="bash $PWD/tests/test_runtime_apps/run_built.sh {app_dir} {module} {attr}" \
#     .venv/bin/python -m pytest tests/test_runtime_server.py
#
# A project directory (pyproject.toml present: the examples) is built whole; otherwise MODULE.py.
# Binaries are built into $FORGE_BUILT_DIR (default /tmp/forge-runtime-built/), keyed by the app's
# and the runtime's sources, and reused while those are unchanged. Build them all first with `run_built.sh --prebuild`, since a
# test waits only 30 s for its server.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
forge=${FORGE:-$root/.venv/bin/forge}
built=${FORGE_BUILT_DIR:-/tmp/forge-runtime-built}

build() {  # build APP_DIR MODULE -> prints the binary's path
  local app_dir=$1 module=$2 src out key
  if [ -f "$app_dir/pyproject.toml" ]; then src=$app_dir; else src=$app_dir/$module.py; fi
  # Keyed by the sources and the runtime, so an edit to either means a rebuild.
  key=$( { printf '%s\n' "$src"; find "$src" "$root/runtime" -maxdepth 1 \( -name '*.py' -o -name pyproject.toml \) \
           -type f | sort | xargs cat; } | sha256sum | cut -c1-12)
  out=$built/$module-$key
  if [ ! -x "$out/app" ]; then
    "$forge" build "$src" -o "$out" >&2
  fi
  printf '%s\n' "$out/app"
}

if [ "${1:-}" = "--prebuild" ]; then
  for m in handler_app async_app asgi_app asgi_nolifespan wsgi_app; do build "$here" "$m" >/dev/null; done
  for e in hello asgi wsgi; do build "$root/examples/$e" app >/dev/null; done
  exit 0
fi
app_dir=$1 module=$2 attr=${3:-app}
if [ "$attr" != app ]; then
  echo "run_built.sh: only an attribute named app can be built (got $module:$attr)" >&2
  exit 3
fi
exec "$(build "$app_dir" "$module")"
