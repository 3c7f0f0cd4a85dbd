#!/usr/bin/env bash
# The SDK recipe, one stage per call: `recipe.sh STAGE`. forge's builder runs the stages in order,
# each with its own log, and hashes this file into the cache key, so editing it rebuilds the SDK.
# Inputs (environment): WORK (scratch dir), SRC (verified tarballs), PREFIX (python install dir),
# DEPS (static libraries), CC (the musl compiler wrapper), JOBS, PATCHES (forge/sdk/patches).
set -euo pipefail
stage=$1
cd "$WORK"
export PKG_CONFIG_LIBDIR="$DEPS/lib/pkgconfig" PKG_CONFIG_PATH=""   # never see the host's glibc .pc files
# Sections per function/datum let the final static link drop unused code (--gc-sections).
CF="-O2 -fPIC -ffunction-sections -fdata-sections"

unpack() {  # unpack TARBALL into a fresh build dir named after the stage, cd into it
  rm -rf "$WORK/build/$stage"; mkdir -p "$WORK/build/$stage"
  tar -xf "$SRC/$1" -C "$WORK/build/$stage" --strip-components=1
  cd "$WORK/build/$stage"
}

case "$stage" in
zlib)
  unpack "$ZLIB_TARBALL"
  CC="$CC" CFLAGS="$CF" ./configure --static --prefix="$DEPS"
  make -j"$JOBS" libz.a && make install ;;
bzip2)
  unpack "$BZIP2_TARBALL"
  make -j"$JOBS" CC="$CC" CFLAGS="$CF -D_FILE_OFFSET_BITS=64" libbz2.a
  install -m644 libbz2.a "$DEPS/lib/"; install -m644 bzlib.h "$DEPS/include/" ;;
xz)
  unpack "$XZ_TARBALL"
  ./configure --prefix="$DEPS" --libdir="$DEPS/lib" --disable-shared --enable-static --disable-xz \
    --disable-xzdec --disable-lzmadec --disable-lzmainfo --disable-lzma-links --disable-scripts \
    --disable-doc --disable-nls CC="$CC" CFLAGS="$CF"
  make -j"$JOBS" -C src/liblzma && make -C src/liblzma install ;;
libffi)
  unpack "$LIBFFI_TARBALL"
  # Debian's orig is libffi's git tree, without a generated configure.
  [ -x configure ] || ./autogen.sh >/dev/null
  ./configure --prefix="$DEPS" --libdir="$DEPS/lib" --disable-shared --enable-static --with-pic \
    --disable-docs --disable-multi-os-directory CC="$CC" CFLAGS="$CF"
  make -j"$JOBS" && make install ;;
sqlite)
  # The Debian orig is sqlite's full source tree; its Makefile generates the amalgamation (needs
  # tclsh), which we compile ourselves: one object, the options CPython's docs recommend.
  unpack "$SQLITE_TARBALL"
  ./configure --disable-shared --disable-tcl --disable-readline CC="$CC" >/dev/null
  make sqlite3.c
  "$CC" $CF -DSQLITE_THREADSAFE=1 -DSQLITE_ENABLE_FTS5 -DSQLITE_ENABLE_JSON1 -DSQLITE_ENABLE_RTREE \
    -DSQLITE_ENABLE_MATH_FUNCTIONS -DSQLITE_OMIT_LOAD_EXTENSION -c sqlite3.c -o sqlite3.o
  ar rcs "$DEPS/lib/libsqlite3.a" sqlite3.o
  install -m644 sqlite3.h sqlite3ext.h "$DEPS/include/" ;;
libuuid)
  unpack "$UTIL_LINUX_TARBALL"
  ./configure --prefix="$DEPS" --libdir="$DEPS/lib" --disable-all-programs --enable-libuuid \
    --disable-shared --enable-static --without-python --without-systemd --without-udev \
    --disable-nls --disable-bash-completion --without-tinfo --without-ncurses CC="$CC" CFLAGS="$CF"
  make -j"$JOBS" libuuid.la && make install-usrlib_execLTLIBRARIES install-uuidincHEADERS install-pkgconfigDATA ;;
openssl)
  unpack "$OPENSSL_TARBALL"
  # no-shared: static only. no-afalgeng: needs kernel crypto headers we don't want. The CA store is
  # found through SSL_CERT_FILE, which forge images set.
  ./Configure linux-x86_64 no-shared no-tests no-afalgeng --prefix="$DEPS" --libdir=lib \
    --openssldir=/etc/ssl CC="$CC" -fPIC -ffunction-sections -fdata-sections
  make -j"$JOBS" build_libs && make install_dev ;;
mimalloc)
  # One object (src/static.c is the whole allocator) that defines malloc, free, calloc, realloc and
  # the aligned/usable-size family, so a static link takes these instead of musl's (musl >= 1.2.1
  # supports replacing malloc; its internal allocations keep using its own). __USE_ISOC11 is how
  # mimalloc decides to define aligned_alloc; it is glibc's macro, so musl needs it said.
  unpack "$MIMALLOC_TARBALL"
  "$CC" $CF -DNDEBUG -DMI_MALLOC_OVERRIDE -DMI_STATIC_LIB -D__USE_ISOC11=1 -Iinclude \
    -c src/static.c -o "$DEPS/lib/forge-mimalloc.o" ;;
cpython)
  unpack "$CPYTHON_TARBALL"
  # Modules a static edge binary cannot or should not carry: GUI/terminal libraries we don't build
  # and the test modules (names that a version lacks are ignored by makesetup).
  DISABLED="_tkinter _curses _curses_panel _dbm _gdbm readline _testcapi _testinternalcapi
    _testbuffer _testimportmultiple _testmultiphase _testsinglephase _testlimitedcapi _ctypes_test
    _testexternalinspection xxlimited xxlimited_35 xxsubtype _xxtestfuzz _testclinic
    _testclinic_limited"
  for p in "$PATCHES"/cpython-*.patch; do patch -p1 < "$p"; done
  # --enable-optimizations: profile-guided (PGO). make builds an instrumented interpreter, runs
  # CPython's --pgo test subset with it, and rebuilds with the profile: ~10-20% faster start-up and
  # request handling for every workload, for a few more minutes of this one-time build.
  # MODULE_BUILDTYPE=static: since 3.12 every stdlib extension is a Setup.stdlib line, and this
  # makes each of them a built-in of the interpreter and of libpython (a static binary cannot
  # dlopen). The bundled libmpdec and expat are used: they are linked into workloads too.
  # --without-mimalloc: 3.13+ bundles mimalloc into libpython (only used under PYTHONMALLOC=mimalloc
  # or free threading) and its symbols clash with the mimalloc object forge links into every
  # workload as the process allocator (docs/sdk.md, "Allocator").
  ./configure --prefix="$PREFIX" --disable-shared --without-ensurepip --disable-test-modules \
    --with-openssl="$DEPS" --with-lto=no --enable-optimizations --without-system-libmpdec \
    --without-system-expat --without-mimalloc CC="$CC" \
    OPT="-DNDEBUG -fwrapv -O2 -Wall -ffunction-sections -fdata-sections" CPPFLAGS="-I$DEPS/include" LDFLAGS="-static -L$DEPS/lib" \
    LIBFFI_CFLAGS="-I$DEPS/include" LIBFFI_LIBS="-lffi" \
    LIBSQLITE3_CFLAGS="-I$DEPS/include" LIBSQLITE3_LIBS="-lsqlite3" \
    LIBUUID_CFLAGS="-I$DEPS/include/uuid" LIBUUID_LIBS="-luuid" \
    LIBLZMA_CFLAGS="-I$DEPS/include" LIBLZMA_LIBS="-llzma" \
    BZIP2_CFLAGS="-I$DEPS/include" BZIP2_LIBS="-lbz2" \
    ZLIB_CFLAGS="-I$DEPS/include" ZLIB_LIBS="-lz" \
    MODULE_BUILDTYPE=static LINKFORSHARED=" "
  { echo '*disabled*'; printf '%s\n' $DISABLED; } > Modules/Setup.local
  # A bounded profile run: a stuck test cannot hold the build for the default 20 minutes. Since
  # 3.13 a failing profile test fails the build; three fail on musl for musl's reasons (fma() loses
  # the sign of a zero result; re's locale tests need a locale musl does not implement), so they
  # are left out of the profile run. The SDK's own regression tests run separately (docs/sdk.md).
  make -j"$JOBS" PROFILE_TASK="-m test --pgo --timeout=300 --ignore *.test_fma_zero_result \
    --ignore *.test_locale_caching --ignore *.test_locale_compiled"
  make install
  # CPython's bundled libmpdec and libexpat, and the HACL* hash libraries (3.12+), are linked into
  # libpython's users (Nuitka) too.
  install -m644 Modules/_decimal/libmpdec/libmpdec.a Modules/expat/libexpat.a Modules/_hacl/*.a "$DEPS/lib/"
  # CPython's own regression tests, kept beside the SDK (not in it: workloads never see them) so
  # forge's tests can run them inside the SDK interpreter.
  mkdir -p "$PREFIX/../cpython-tests"
  cp -a Lib/test "$PREFIX/../cpython-tests/test" ;;
*)
  echo "unknown stage: $stage" >&2; exit 2 ;;
esac
