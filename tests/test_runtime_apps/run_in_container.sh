#!/usr/bin/env bash
# Serve a test app from a forge-built image in a container (read-only rootfs, user 65532), for
# running tests/test_runtime_server.py against the real deployment shape:
#
#   FORGE_RUNTIME_SERVER_CMD="bash $PWD/tests/test_runtime_apps/run_in_container.sh {app_dir} {module} {attr}"
#
# The image is built and loaded once per app (`forge build --load`); PORT and every FORGE_*
# variable of the test are passed into the container; `docker run` stays attached, so the
# container's stdout/stderr are the test's, SIGTERM/SIGINT are proxied to the server, and the exit
# code is the server's.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
forge=${FORGE:-$root/.venv/bin/forge}
built=${FORGE_BUILT_DIR:-/tmp/forge-runtime-built}
app_dir=$1 module=$2 attr=${3:-app}
[ "$attr" = app ] || { echo "run_in_container.sh: only an attribute named app can be built" >&2; exit 3; }
if [ -f "$app_dir/pyproject.toml" ]; then src=$app_dir; else src=$app_dir/$module.py; fi
key=$(cat "$src" "$root"/runtime/*.py 2>/dev/null | sha256sum | cut -c1-12)
tag="forge-runtime-test/$module:$key"
if ! docker image inspect "$tag" >/dev/null 2>&1; then
  "$forge" build "$src" -o "$built/$module-container" --tag "$tag" --load >&2
fi
[ "${FORGE_BUILD_ONLY:-}" = 1 ] && exit 0
envs=(-e "PORT=$PORT")
while IFS='=' read -r name _; do
  case $name in FORGE_RUNTIME_SERVER_CMD|FORGE_BUILT_DIR|FORGE_CACHE_DIR|FORGE_BUILD_ONLY|FORGE_TEST_SHARE) ;;
    FORGE_*) envs+=(-e "$name") ;; esac
done < <(env)
# FORGE_TEST_SHARE: the directory holding the tests' tmp dirs, mounted at the same path, so tests
# that hand the app file paths (lifespan events, start gates, blocking handlers) work unchanged.
# The server runs as 65532, so the (test-only) tree is opened to it first.
mounts=()
if [ -n "${FORGE_TEST_SHARE:-}" ]; then
  chmod -R a+rwX "$FORGE_TEST_SHARE" 2>/dev/null || true  # files the server made stay its own
  mounts=(-v "$FORGE_TEST_SHARE:$FORGE_TEST_SHARE")
fi
# Host networking: the server sees clients as 127.0.0.1, as the tests expect (with -p it would
# see the bridge gateway); the image, rootfs and user are unchanged.
# The label (one value per test session: its share) lets that session find and remove a container
# whose `docker run` client was killed, without touching another session's on the same daemon.
label=forge-runtime-test=$(basename "${FORGE_TEST_SHARE:-none}")
exec docker run --rm --read-only --user 65532 --network host --label "$label" \
  "${envs[@]}" "${mounts[@]}" "$tag"
