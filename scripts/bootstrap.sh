#!/usr/bin/env bash
# Set up everything forge needs on this machine, idempotently:
#   - system packages (Debian/Ubuntu: installed with apt-get; elsewhere: named precisely),
#   - a virtualenv in .venv with forge (and, with --test, its test dependencies), at the versions
#     pinned in constraints.txt: the set the test suite passed with (docs/development.md).
# Usage: scripts/bootstrap.sh [--test]   (--test adds what the test suite needs: Docker, registry, wrk)
# FORGE_VENV=DIR puts the virtualenv elsewhere (tests/test_cli_usage.py installs one the README's way).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
want_test=0
[ "${1:-}" = "--test" ] && want_test=1

# command -> Debian package providing it
declare -A need=([musl-gcc]=musl-tools [tclsh]=tcl [make]=make [patch]=patch [gcc]=gcc
                 [strip]=binutils [patchelf]=patchelf [file]=file [openssl]=openssl [debootstrap]=debootstrap [pkg-config]=pkg-config [autoreconf]=autoconf [aclocal]=automake [libtoolize]=libtool [ccache]=ccache [xz]=xz-utils [bzip2]=bzip2 [curl]=curl)
if [ $want_test = 1 ]; then
  need+=([dockerd]=docker.io [docker-registry]=docker-registry [wrk]=wrk [htpasswd]=apache2-utils
         [node]=nodejs [npm]=npm)
fi
missing=()
for cmd in "${!need[@]}"; do command -v "$cmd" >/dev/null 2>&1 || missing+=("${need[$cmd]}"); done
[ -d /usr/include/linux ] || missing+=(linux-libc-dev)
# libffi is built from its git tree: autogen.sh needs libtool's ltdl.m4 (LT_SYS_SYMBOL_USCORE),
# which is in libltdl-dev, only a Recommends of libtool (not installed with --no-install-recommends)
[ -f /usr/share/aclocal/ltdl.m4 ] || missing+=(libltdl-dev)
if [ ${#missing[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    echo "[bootstrap] installing: ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "[bootstrap] this is not a Debian-like system; install these packages (Debian names) yourself:" >&2
    printf '  %s\n' "${missing[@]}" >&2
    echo "  musl-tools: musl-gcc; docker.io: the Docker engine; docker-registry: the OCI registry (distribution)" >&2
    exit 3
  fi
fi

py=${PYTHON:-python3}
"$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  echo "[bootstrap] forge needs Python >= 3.11 to run ($py is $("$py" -V 2>&1)); set PYTHON=python3.11" >&2; exit 3; }
venv=${FORGE_VENV:-$here/.venv}
if [ ! -x "$venv/bin/python" ]; then
  "$py" -m venv "$venv"
fi
extra=""; [ $want_test = 1 ] && extra="[test]"
"$venv/bin/python" -m pip install -q --disable-pip-version-check -c "$here/constraints.txt" -e "$here$extra" \
  2> >(grep -v "is ignored: it is neither" >&2)
echo "[bootstrap] ready: $venv/bin/forge"
