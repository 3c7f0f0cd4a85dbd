"""Native extension modules of dependencies, built from source and linked in as built-in modules.

While pip builds a dependency from its sdist, forge's compiler driver (`driver.py`) stands in for
cc, c++, ld and ar: where the build links an extension module it writes one relocatable object
instead, with `PyInit_<name>` its only global symbol and a manifest section. After the install,
`collect()` finds those objects in the site dir (their paths give the dotted names), renames each
init function to a unique symbol, moves the objects out of the site dir (so Nuitka never sees a
fake .so) and returns them; the native target links them and lists them in the module table.
See docs/extensions.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from forge import errors
from forge.extensions.inittab import build_inittab_object

DRIVER = Path(__file__).with_name("driver.py")
MANIFEST_SECTION = ".forge.ext"
SHIMS = {"cc": "cc", "gcc": "cc", "clang": "cc", "x86_64-linux-musl-gcc": "cc",
         "x86_64-linux-gnu-gcc": "cc", "c++": "c++", "g++": "c++", "clang++": "c++",
         "x86_64-linux-gnu-g++": "c++", "ld": "ld", "ar": "ar", "ranlib": "ranlib", "strip": "strip",
         "pkg-config": "pkg-config"}
ZIG_TARGET = "x86_64-linux-musl"


def driver_fingerprint() -> str:
    """Changes whenever the driver does: part of the key of every cached source-built wheel."""
    h = hashlib.sha256(DRIVER.read_bytes())
    h.update(Path(__file__).read_bytes())
    return h.hexdigest()[:12]


@dataclass(frozen=True)
class ExtensionModule:
    name: str              # the dotted module name, e.g. markupsafe._speedups
    symbol: str            # its (unique) init function in the linked object
    object: str            # path of the relocatable object to link
    distribution: str      # the distribution that installed it
    libraries: tuple[str, ...] = ()   # SDK static libraries it asked for (z, ffi, ssl...)
    cxx: bool = False      # needs the C++ runtime (libc++, libc++abi, libunwind)

    def to_json(self) -> dict:
        return {**asdict(self), "libraries": list(self.libraries)}

    @classmethod
    def from_json(cls, d: dict) -> "ExtensionModule":
        return cls(**{**d, "libraries": tuple(d.get("libraries", ()))})


def zig_cxx() -> list[str]:
    """zig's clang as a musl C++ compiler (the ziglang wheel, a forge dependency). The zig binary
    itself, not `python -m ziglang`: pip's isolated build environments hide forge's site-packages
    from any Python a build starts."""
    try:
        import ziglang
    except ImportError:
        raise errors.CompilerNotFound(
            "building a C++ extension module needs zig's C++ compiler for musl, from the ziglang "
            "package, which is not installed. Install forge with its dependencies "
            "(`pip install ziglang==0.15.2`) and build again.") from None
    return [str(Path(ziglang.__file__).with_name("zig")), "c++", "-target", ZIG_TARGET]


def _cxx_or_empty() -> str:
    try:
        return shlex.join(zig_cxx())
    except errors.CompilerNotFound:
        return ""  # the driver says so if a package has C++ sources


def toolchain_env(sdk, bindir: Path, events: Path) -> dict[str, str]:
    """Environment for a pip run whose source builds go through forge's driver."""
    bindir.mkdir(parents=True, exist_ok=True)
    (bindir / "pkgconfig").mkdir(exist_ok=True)
    for name, role in SHIMS.items():
        shim = bindir / name
        shim.write_text(f"#!/bin/sh\nexec '{sys.executable}' '{DRIVER}' {role} \"$@\"\n")
        shim.chmod(0o755)
    tools = {t: shutil.which(t) or t for t in ("ld", "ar", "ranlib", "nm", "objcopy", "strip")}
    return {
        "CC": str(bindir / "cc"), "CXX": str(bindir / "c++"),
        "LDSHARED": f"{bindir / 'cc'} -shared", "LDCXXSHARED": f"{bindir / 'c++'} -shared",
        "LD": str(bindir / "ld"), "AR": str(bindir / "ar"), "RANLIB": str(bindir / "ranlib"),
        "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "FORGE_EXT_CC": str(sdk.cc), "FORGE_EXT_CXX": _cxx_or_empty(),
        "FORGE_EXT_LIBDIR": str(sdk.deps_lib), "FORGE_EXT_EVENTS": str(events),
        "FORGE_EXT_BIN": str(bindir),
        "FORGE_EXT_INCDIR": str(sdk.deps_lib.parent / "include"),
        "FORGE_EXT_LD": tools["ld"], "FORGE_EXT_AR": tools["ar"], "FORGE_EXT_RANLIB": tools["ranlib"],
        "FORGE_EXT_NM": tools["nm"], "FORGE_EXT_OBJCOPY": tools["objcopy"],
        "FORGE_EXT_STRIP": tools["strip"],
        # meson-python and scikit-build-core use the host's ninja/cmake when they are on PATH (their
        # PyPI wheels are manylinux builds the static SDK interpreter cannot install).
        "CMAKE_GENERATOR": "Ninja" if shutil.which("ninja") else "Unix Makefiles",
        # No pkg-config answers from the host (glibc libraries a musl build cannot link); and
        # --define-prefix for the SDK's python-3.x.pc (meson asks it), whose prefix= is the
        # directory the SDK was built in, not where it is.
        "PKG_CONFIG": str(bindir / "pkg-config"),
        "PKG_CONFIG_LIBDIR": str(bindir / "pkgconfig"), "PKG_CONFIG_PATH": "",
        "FORGE_EXT_PKG_CONFIG": shutil.which("pkg-config") or "",
    }


def read_manifest(path: Path) -> dict | None:
    """The driver's manifest of an object it wrote, or None for anything else (a real .so)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(18)
    except OSError:
        return None
    if head[:4] != b"\x7fELF" or int.from_bytes(head[16:18], "little") != 1:
        return None
    from elftools.elf.elffile import ELFFile

    with open(path, "rb") as fh:
        sec = ELFFile(fh).get_section_by_name(MANIFEST_SECTION)
        return json.loads(sec.data()) if sec is not None else None


def dotted_name(site: Path, path: Path) -> str:
    rel = path.relative_to(site)
    return ".".join((*rel.parts[:-1], rel.name.split(".", 1)[0]))


def unique_symbol(dotted: str) -> str:
    last = dotted.rsplit(".", 1)[-1]
    return f"PyInit_forge_{hashlib.sha256(dotted.encode()).hexdigest()[:10]}_{last}"


def collect(site: Path, dest: Path, owner) -> list[ExtensionModule]:
    """Move the driver's objects out of `site` into `dest`, one per extension module, each with its
    init function renamed to a unique symbol. `owner(path)` names the distribution of a file."""
    found: list[ExtensionModule] = []
    for path in sorted(p for p in site.rglob("*.so") if p.is_file()):
        manifest = read_manifest(path)
        if manifest is None:
            continue  # a real shared object: deps.py refuses those with its own message
        name = dotted_name(site, path)
        dist = owner(path)
        if manifest.get("init") is None:
            # A shared library that is not an extension module (no PyInit_<name>): nothing can
            # import it as a module; its code is reachable only through ctypes, which a static
            # binary cannot do. Leave it out and say so if a package imports it.
            path.unlink()
            continue
        dest.mkdir(parents=True, exist_ok=True)
        obj = dest / f"{name}.o"
        symbol = unique_symbol(name)
        proc = subprocess.run(["objcopy", "--remove-section", MANIFEST_SECTION,
                               "--redefine-sym", f"{manifest['init']}={symbol}", str(path), str(obj)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise errors.DependencyInstallFailed(
                f"preparing the extension module {name} of {dist} for linking failed: "
                f"{proc.stderr.strip()}. This is a bug in forge's extension support; please report it.")
        path.unlink()
        found.append(ExtensionModule(name, symbol, str(obj), dist, tuple(manifest.get("libraries", ())),
                                     bool(manifest.get("cxx"))))
    return found


def save(modules: list[ExtensionModule], path: Path) -> None:
    path.write_text(json.dumps([m.to_json() for m in modules], indent=1, sort_keys=True))


def load(path: Path) -> tuple[ExtensionModule, ...]:
    if not path.is_file():
        return ()
    return tuple(ExtensionModule.from_json(d) for d in json.loads(path.read_text()))


# --- the final link ---------------------------------------------------------------------------------

def cxx_runtime() -> list[Path]:
    """zig's libc++.a, libc++abi.a and libunwind.a for x86_64-linux-musl (zig builds them into its
    cache the first time a C++ program is linked; this links one and reads the paths)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="forge-cxxrt-") as tmp:
        src = Path(tmp, "probe.cpp")
        src.write_text("#include <stdexcept>\nint main(){try{throw std::runtime_error(\"x\");}"
                       "catch(const std::exception&){return 0;}return 1;}\n")
        proc = subprocess.run([*zig_cxx(), "-static", "-v",
                               str(src), "-o", str(Path(tmp, "probe"))], capture_output=True, text=True)
        text = proc.stdout + proc.stderr
    libs = {}
    for m in re.finditer(r"(\S+/(libc\+\+abi|libc\+\+|libunwind)\.a)\b", text):
        libs.setdefault(m.group(2), Path(m.group(1)))
    if proc.returncode != 0 or set(libs) != {"libc++", "libc++abi", "libunwind"}:
        raise errors.CompileFailed(
            f"forge could not get zig's C++ runtime (libc++, libc++abi, libunwind for {ZIG_TARGET}), "
            f"which a C++ extension module needs: `{' '.join(zig_cxx())}` said:\n{text[-1500:]}\n"
            f"Reinstall forge's dependencies (`pip install ziglang==0.15.2`) and build again.")
    return [libs["libc++"], libs["libc++abi"], libs["libunwind"]]


def link_flags(modules: tuple[ExtensionModule, ...]) -> list[str]:
    """What the native link adds for these modules: the objects, then the libraries they use."""
    if not modules:
        return []
    flags = [m.object for m in modules]
    libs = dict.fromkeys(lib for m in modules for lib in m.libraries)
    flags += [f"-l:lib{lib}.a" for lib in libs]
    if any(m.cxx for m in modules):
        # --eh-frame-hdr: without it libunwind finds no unwind tables and every throw aborts.
        flags += ["-Wl,--eh-frame-hdr", "-Wl,--start-group", *map(str, cxx_runtime()), "-Wl,--end-group"]
    return flags


# --- the compile-time interpreter ----------------------------------------------------------------

INTERPRETER_MAIN = ("#include <Python.h>\n"
                    "int main(int argc, char **argv) { return Py_BytesMain(argc, argv); }\n")


def build_interpreter(sdk, modules: tuple[ExtensionModule, ...], out_dir: Path) -> Path:
    """The SDK's interpreter relinked with the dependencies' extension modules built in.

    Nuitka imports packages while it compiles them (its anti-bloat and implicit-import rules run
    `import psutil`, `import numpy`...); the SDK's own static interpreter cannot load the extension
    objects, so such a package would fail at compile time. This one is linked from the SDK's
    libpython.a with every SDK built-in plus the extension modules."""
    libpl = next(sdk.path.glob("python/lib/python3.*/config-3.*"))
    include_dir = next(sdk.path.glob("python/include/python3.*"))
    out_dir.mkdir(parents=True, exist_ok=True)
    table, _ = build_inittab_object(sdk.python, sdk.cc, libpl, include_dir,
                                    set(sdk.manifest["builtin_modules"]), out_dir,
                                    {m.name: m.symbol for m in modules})
    main_c = out_dir / "forge_python_main.c"
    main_c.write_text(INTERPRETER_MAIN)
    # A prefix of its own whose lib/ and include/ are the SDK's: CPython's getpath finds the
    # stdlib beside the executable (bin/../lib/python3.x/os.py), with or without PYTHONHOME (Nuitka
    # starts sys.executable with a cleaned environment).
    sdk_prefix = sdk.python.parent.parent
    for sub in ("lib", "include"):
        if not (out_dir / sub).exists():
            (out_dir / sub).symlink_to(sdk_prefix / sub)
    (out_dir / "bin").mkdir(exist_ok=True)
    exe = out_dir / "bin" / "python3"
    libs = subprocess.run([str(sdk.python), "-c", "import sysconfig as s; print(s.get_config_var('MODLIBS') "
                           "or '', s.get_config_var('LIBS') or '', s.get_config_var('SYSLIBS') or '')"],
                          capture_output=True, text=True, check=True).stdout.split()
    libname = next(libpl.glob("libpython3*.a")).name[3:-2]
    cmd = [str(sdk.cc), "-static", f"-I{include_dir}", str(main_c), str(table), *link_flags(modules),
           f"-L{libpl}", f"-L{sdk.deps_lib}", f"-l{libname}", *libs, "-o", str(exe)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise errors.CompileFailed(
            f"linking the compile-time interpreter with the dependencies' extension modules "
            f"({', '.join(m.name for m in modules)}) failed:\n{proc.stderr[-3000:]}\nThis is a bug "
            f"in forge's extension support; please report it.")
    return exe
