"""forge's compiler driver: stands in for cc, c++, ld and ar while a dependency builds from source.

Run as `python driver.py ROLE ARGS...` by the small shims `forge.extensions.toolchain` puts first on
PATH (and in CC, CXX, LDSHARED...), in the way Pyodide's compiler wrapper works, so setuptools,
meson-python, scikit-build-core and plain Makefiles all go through it. Standard library only: it
runs under whatever Python the build runs (the SDK's, typically).

- Compiling (`-c`, `-E`, `-S`, `-M`...) and linking executables (configure and meson probes) are
  passed to the real compilers: the SDK's musl-gcc for C, `zig c++ -target x86_64-linux-musl` for
  C++ (Debian has no libstdc++ for musl). Executables are linked `-static` against the SDK's libs,
  so a probe for `-lz` answers as the final link will.
- Linking a shared object (`-shared`) is where a normal build would make an extension module. The
  driver instead writes ONE relocatable object (`ld -r` of the inputs and of the package's own
  static archives), keeps `PyInit_<name>` its only global symbol (every other definition becomes
  local, so two extensions can never collide), and embeds a manifest in a `.forge.ext` section:
  the module's name, its init symbol, the libraries it asked for (`-lz`, `-lffi`, `-lstdc++`),
  whether it needs the C++ runtime. That object is written where the .so was expected, so pip and
  the build finish normally; forge finds it in the installed site dir, where its path gives its
  dotted name.
- A library that neither the package nor the SDK provides fails the link, with a line in the log
  and an event in FORGE_EXT_EVENTS that forge turns into its one-paragraph error.

Environment (set by forge): FORGE_EXT_CC (the SDK's musl-gcc wrapper), FORGE_EXT_CXX (a command
line for zig c++), FORGE_EXT_LIBDIR (the SDK's static libraries), FORGE_EXT_INCDIR (their headers), FORGE_EXT_EVENTS (a JSON-lines
file), FORGE_EXT_LD/AR/OBJCOPY/NM (binutils), FORGE_EXT_BIN (the shims' directory).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile

VERSION = "1"
MANIFEST_SECTION = ".forge.ext"
CXX_SUFFIXES = (".cc", ".cpp", ".cxx", ".c++", ".C", ".cp", ".CPP", ".mm")
C_SUFFIXES = (".c", ".s", ".S")  # assembly too: numpy links its SVML .s files in one step
# Libraries every static musl link has (libc's parts) or that forge links itself (the C++ runtime).
LIBC_PARTS = {"c", "m", "pthread", "dl", "rt", "util", "crypt", "resolv", "xnet"}
CXX_RUNTIME = {"stdc++", "c++", "c++abi", "supc++", "unwind", "gcc_s", "gcc", "gcc_eh", "atomic"}
# -l names an extension may use that are the SDK's static libraries under another name.
SDK_ALIASES = {"sqlite": "sqlite3", "bzip2": "bz2", "ssl3": "ssl"}
NON_LINK_ACTIONS = ("-c", "-E", "-S", "-M", "-MM", "-fsyntax-only", "--version", "-v", "-dumpversion",
                    "-dumpmachine", "-dumpfullversion", "-print-search-dirs")


def _env(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def _event(kind: str, **fields) -> None:
    path = _env("FORGE_EXT_EVENTS")
    if path:
        with open(path, "a") as fh:
            fh.write(json.dumps({"event": kind, "cwd": os.getcwd(), **fields}) + "\n")


def _is_cxx_source(args: list[str]) -> bool:
    for i, a in enumerate(args):
        if a == "-x" and i + 1 < len(args) and args[i + 1].startswith("c++"):
            return True
        if a.startswith("-x") and a[2:].startswith("c++"):
            return True
        if not a.startswith("-") and a.endswith(CXX_SUFFIXES):
            return True
    return False


def _compiler(cxx: bool) -> list[str]:
    if cxx:
        if not _env("FORGE_EXT_CXX"):
            sys.stderr.write("forge-driver: error: this package has C++ sources and forge's C++ "
                             "compiler for musl (zig, from the ziglang package) is not installed\n")
            sys.exit(1)
        return shlex.split(_env("FORGE_EXT_CXX"))
    return [_env("FORGE_EXT_CC", "musl-gcc")]


def _clean_for_zig(args: list[str]) -> list[str]:
    """gcc-only flags that the SDK's sysconfig hands every build and clang rejects."""
    drop_prefix = ("-fprofile-use", "-fprofile-correction", "-fprofile-partial-training",
                   "-fno-semantic-interposition", "-fstack-clash-protection", "-fcf-protection")
    out = []
    for a in args:
        if a.startswith(drop_prefix) or a == "-fprofile-partial-training":
            continue
        out.append(a)
    if any(a.startswith("-mavx512") for a in out) and "-mno-evex512" not in out:
        out.append("-mevex512")  # clang 18+: 512-bit AVX-512 vectors need it (numpy's dispatch sources)
    return out


def _parse_link(args: list[str]) -> dict:
    """The parts of a link line that matter for a relocatable link."""
    out, inputs, libdirs, libs, i = "a.out", [], [], [], 0
    while i < len(args):
        a = args[i]
        nxt = args[i + 1] if i + 1 < len(args) else None
        if a == "-o" and nxt is not None:
            out, i = nxt, i + 2
            continue
        if a.startswith("-o") and len(a) > 2:
            out = a[2:]
        elif a == "-L" and nxt is not None:
            libdirs.append(nxt)
            i += 1
        elif a.startswith("-L"):
            libdirs.append(a[2:])
        elif a == "-l" and nxt is not None:
            libs.append(nxt)
            i += 1
        elif a.startswith("-l"):
            libs.append(a[2:])
        elif a.startswith("-Wl,") or a == "-Xlinker":
            parts = a[4:].split(",") if a.startswith("-Wl,") else [nxt or ""]
            if a == "-Xlinker":
                i += 1
            for p in parts:
                if p.startswith("-l"):
                    libs.append(p[2:])
                elif p.startswith("-L"):
                    libdirs.append(p[2:])
                elif p.endswith((".a", ".o")) and os.path.isfile(p):
                    inputs.append(p)
        elif a in ("-MF", "-MT", "-MQ", "-T", "-x", "-include", "-isystem", "-I", "-D", "-U",
                   "-arch", "-target", "-soname", "--sysroot", "-z"):
            i += 1
        elif not a.startswith("-") and os.path.isfile(a):
            inputs.append(a)
        elif not a.startswith("-") and a.endswith(CXX_SUFFIXES + C_SUFFIXES):
            inputs.append(a)  # a source compiled and linked in one step
        i += 1
    return {"out": out, "inputs": inputs, "libdirs": libdirs, "libs": libs}


def _is_elf_rel(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(18)
    except OSError:
        return False
    return head[:4] == b"\x7fELF" and int.from_bytes(head[16:18], "little") == 1


def _resolve_libs(libs: list[str], libdirs: list[str]) -> tuple[list[str], list[str], list[str]]:
    """(-l archives the package built itself, -l names forge links at the end, missing names)."""
    sdk_lib = _env("FORGE_EXT_LIBDIR")
    own, recorded, missing = [], [], []
    for name in dict.fromkeys(libs):
        if name.startswith(":"):
            base = name[1:]
            found = next((os.path.join(d, base) for d in libdirs if os.path.isfile(os.path.join(d, base))), None)
            stem = base[3:].split(".")[0] if base.startswith("lib") else base
        else:
            found = None
            for d in libdirs:
                if os.path.realpath(d) == os.path.realpath(sdk_lib or "/nonexistent"):
                    continue
                for cand in (f"lib{name}.a", f"lib{name}.so"):
                    p = os.path.join(d, cand)
                    if os.path.isfile(p) and (cand.endswith(".a") or _is_elf_rel(p)):
                        found = p
                        break
                if found:
                    break
            stem = name
        if found and not os.path.realpath(found).startswith(os.path.realpath(sdk_lib or "/nonexistent")):
            own.append(found)
            continue
        stem = SDK_ALIASES.get(stem, stem)
        if stem in LIBC_PARTS or stem in CXX_RUNTIME:
            recorded.append(stem)
        elif sdk_lib and os.path.isfile(os.path.join(sdk_lib, f"lib{stem}.a")):
            recorded.append(stem)
        else:
            missing.append(stem)
    return own, recorded, missing


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd)
    if proc.returncode != 0:
        sys.stderr.write(f"forge-driver: failed ({proc.returncode}): {shlex.join(cmd)}\n")
        sys.exit(proc.returncode)


def _symbols(obj: str, *flags: str) -> list[str]:
    nm = _env("FORGE_EXT_NM", "nm")
    proc = subprocess.run([nm, *flags, obj], capture_output=True, text=True, check=True)
    return [line.split()[-1] for line in proc.stdout.splitlines() if line.strip()]


def _weak_definitions(obj: str) -> list[str]:
    nm = _env("FORGE_EXT_NM", "nm")
    proc = subprocess.run([nm, "--defined-only", "-g", obj], capture_output=True, text=True, check=True)
    return [f[-1] for f in (line.split() for line in proc.stdout.splitlines()) if len(f) >= 2 and f[-2] in "WVu"]


def link_extension(args: list[str], cxx_mode: bool) -> int:
    spec = _parse_link(args)
    out = spec["out"]
    base = os.path.basename(out)
    module = base.split(".", 1)[0]
    own, recorded, missing = _resolve_libs(spec["libs"], spec["libdirs"])
    if missing:
        sys.stderr.write(
            f"forge-driver: error: {out} links -l{' -l'.join(missing)}, which neither the package "
            f"nor forge's SDK provides as a static library (the SDK has zlib, libffi, OpenSSL, "
            f"sqlite, bz2, lzma, uuid)\n")
        _event("missing-library", output=out, module=module, libraries=missing)
        return 1
    with tempfile.TemporaryDirectory(prefix="forge-ext-") as tmp:
        objects, archives = [], list(own)
        sources = [a for a in spec["inputs"] if a.endswith(CXX_SUFFIXES + C_SUFFIXES)]
        for n, src in enumerate(sources):  # `cc -shared foo.c -o foo.so` compiles as it links
            obj = os.path.join(tmp, f"src{n}.o")
            flags = [a for a in args if a.startswith(("-I", "-D", "-U", "-O", "-f", "-std", "-W")) and
                     not a.startswith("-Wl,")]
            is_cxx = src.endswith(CXX_SUFFIXES)
            cmd = _compiler(is_cxx) + (_clean_for_zig(flags) if is_cxx else flags) + ["-fPIC", "-c", src, "-o", obj]
            if _env("FORGE_EXT_INCDIR"):
                cmd += ["-idirafter", _env("FORGE_EXT_INCDIR")]
            _run(cmd)
            objects.append(obj)
        for p in spec["inputs"]:
            if p in sources:
                continue
            (archives if p.endswith(".a") else objects).append(p)
        if not objects:
            sys.stderr.write(f"forge-driver: error: linking {out}: no object files on the line\n")
            return 1
        combined = os.path.join(tmp, "combined.o")
        ld = _env("FORGE_EXT_LD", "ld")
        cmd = [ld, "-r", "-o", combined, *objects]
        if archives:
            cmd += ["--start-group", *archives, "--end-group"]
        _run(cmd)
        init = f"PyInit_{module}"
        defined = set(_symbols(combined, "--defined-only", "-g"))
        undefined = set(_symbols(combined, "-u"))
        cxx = cxx_mode or any(s.startswith(("_Z", "__cxa_", "__gxx_personality", "_Unwind_")) for s in undefined) \
            or any(lib in CXX_RUNTIME - {"gcc", "gcc_s", "atomic"} for lib in recorded)
        manifest = {"driver": VERSION, "module": module, "init": init if init in defined else None,
                    "libraries": sorted(set(recorded) - LIBC_PARTS - CXX_RUNTIME), "cxx": cxx,
                    }
        meta = os.path.join(tmp, "manifest.json")
        with open(meta, "w") as fh:
            json.dump(manifest, fh, sort_keys=True)
        objcopy = _env("FORGE_EXT_OBJCOPY", "objcopy")
        final = os.path.join(tmp, "final.o")
        # Without the init symbol every definition goes local; such an object is refused by forge
        # when a package imports it (a shared library that is not an extension module).
        # Weak definitions stay global too: C++ inline functions and template instances live in
        # COMDAT groups, and the final link keeps one copy of each group for the whole binary; a
        # copy made local would be referenced from a group the linker discards ("defined in
        # discarded section", numpy's pocketfft against _multiarray_umath). They are identical
        # (one compiler, one libc++), so sharing the kept copy is what a C++ link does anyway.
        keep = ["--keep-global-symbol", init] if init in defined else ["--wildcard", "--localize-symbol=*"]
        if init in defined:
            for sym in _weak_definitions(combined):
                keep += ["--keep-global-symbol", sym]
        _run([objcopy, *keep, "--add-section", f"{MANIFEST_SECTION}={meta}",
              "--set-section-flags", f"{MANIFEST_SECTION}=noload,readonly", combined, final])
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        with open(final, "rb") as src_fh, open(out, "wb") as dst:
            dst.write(src_fh.read())
    _event("extension", output=os.path.abspath(out), **manifest)
    return 0


def compile_or_link(role: str, args: list[str]) -> int:
    if "-shared" in args:
        return link_extension([a for a in args if a != "-shared"], role == "c++")
    cxx = role == "c++" or _is_cxx_source(args)
    cmd = _compiler(cxx)
    args = _clean_for_zig(args) if cxx else list(args)
    if _env("FORGE_EXT_INCDIR"):
        # The headers of the SDK's static libraries (zlib.h, ffi.h, openssl/...), after the
        # package's own -I directories.
        args = args + ["-idirafter", _env("FORGE_EXT_INCDIR")]
    if not any(a in NON_LINK_ACTIONS or a.startswith(("-print-", "--print", "-dump")) for a in args) \
            and not (len(args) == 1 and args[0] in ("--version", "-v")):
        # An executable (a configure or meson probe): static, against the SDK's libraries.
        libdir = _env("FORGE_EXT_LIBDIR")
        args = args + (["-static"] if not cxx else []) + ([f"-L{libdir}"] if libdir else [])
    os.execvp(cmd[0], cmd + args)
    return 127


def _unshadow() -> None:
    """Take the driver's own shims off PATH for the real tools: musl-gcc is a script that runs
    `gcc`, which would otherwise be the shim again (an endless loop)."""
    mine = _env("FORGE_EXT_BIN") or os.path.dirname(os.path.abspath(sys.argv[0]))
    parts = [p for p in _env("PATH").split(os.pathsep)
             if p and os.path.realpath(p) != os.path.realpath(mine)]
    os.environ["PATH"] = os.pathsep.join(parts)


def _expand_response_files(args: list[str]) -> list[str]:
    """gcc's `@file` arguments (meson and ninja use them for long link lines), expanded."""
    out: list[str] = []
    for a in args:
        if a.startswith("@") and os.path.isfile(a[1:]):
            with open(a[1:]) as fh:
                out += _expand_response_files(shlex.split(fh.read()))
        else:
            out.append(a)
    return out


def main(argv: list[str]) -> int:
    role, args = argv[1], argv[2:]
    _unshadow()
    if role in ("cc", "c++", "ld"):
        args = _expand_response_files(args)
    if role in ("cc", "c++"):
        return compile_or_link(role, args)
    if role == "ld":
        if "-shared" in args:
            return link_extension([a for a in args if a != "-shared"], False)
        os.execvp(_env("FORGE_EXT_LD", "ld"), [_env("FORGE_EXT_LD", "ld"), *args])
    if role == "pkg-config":
        exe = _env("FORGE_EXT_PKG_CONFIG")
        if not exe:
            return 1  # "not found", as without pkg-config
        os.execvp(exe, [exe, "--define-prefix", *args])
    tool = {"ar": "FORGE_EXT_AR", "ranlib": "FORGE_EXT_RANLIB", "nm": "FORGE_EXT_NM",
            "objcopy": "FORGE_EXT_OBJCOPY", "strip": "FORGE_EXT_STRIP"}.get(role)
    if tool is None:
        sys.stderr.write(f"forge-driver: unknown role {role!r}\n")
        return 2
    if role == "strip":
        # Stripping one of the driver's objects would drop its manifest and local symbols.
        files = [a for a in args if not a.startswith("-")]
        if files and all(_is_elf_rel(f) for f in files):
            return 0
    exe = _env(tool, role)
    os.execvp(exe, [exe, *args])
    return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv))
