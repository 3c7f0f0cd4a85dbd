"""forge's compiler driver (forge/extensions/driver.py) against the host's musl-gcc and binutils:
no SDK needed. What a build's `cc -shared` leaves, how forge collects it, the module table."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from forge import errors
from forge.extensions import DRIVER, collect, read_manifest, unique_symbol
from forge.extensions.inittab import pruned_config, with_extensions

pytestmark = pytest.mark.skipif(shutil.which("musl-gcc") is None, reason="needs musl-gcc (musl-tools)")

MODULE_C = """
const char *zlibVersion(void);
static int twice(int x) { return 2 * x; }
int helper_shared_name(void) { return twice((int)zlibVersion()[0]); }
void *PyInit_%(name)s(void) { return (void *)(long)helper_shared_name(); }
"""


@pytest.fixture
def driver(tmp_path):
    """Shims like the ones forge puts on PATH, and an 'SDK' lib dir holding a libz.a."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for role in ("cc", "c++", "ld", "ar"):
        shim = bindir / role
        shim.write_text(f"#!/bin/sh\nexec '{sys.executable}' '{DRIVER}' {role} \"$@\"\n")
        shim.chmod(0o755)
    sdklib = tmp_path / "sdklib"
    sdklib.mkdir()
    (tmp_path / "z.c").write_text('const char *zlibVersion(void) { return "1.3"; }\n')
    subprocess.run(["musl-gcc", "-c", str(tmp_path / "z.c"), "-o", str(tmp_path / "z.o")], check=True)
    subprocess.run(["ar", "rcs", str(sdklib / "libz.a"), str(tmp_path / "z.o")], check=True)
    env = {**os.environ, "FORGE_EXT_CC": "musl-gcc", "FORGE_EXT_LIBDIR": str(sdklib),
           "FORGE_EXT_EVENTS": str(tmp_path / "events.jsonl")}

    def run(role, *args, check=True):
        proc = subprocess.run([str(bindir / role), *map(str, args)], env=env, cwd=tmp_path,
                              capture_output=True, text=True)
        if check:
            assert proc.returncode == 0, proc.stderr
        return proc
    run.tmp = tmp_path
    return run


def _globals(obj: Path) -> set[str]:
    out = subprocess.run(["nm", "-g", "--defined-only", str(obj)], capture_output=True, text=True, check=True)
    return {line.split()[-1] for line in out.stdout.splitlines()}


def _ext(driver, pkg: str, name: str) -> Path:
    tmp = driver.tmp
    src = tmp / f"{pkg}_{name}.c"
    src.write_text(MODULE_C % {"name": name})
    driver("cc", "-fPIC", "-O2", "-c", src, "-o", tmp / f"{pkg}_{name}.o")
    out = tmp / "site" / pkg / f"{name}.cpython-313-x86_64-linux-musl.so"
    out.parent.mkdir(parents=True, exist_ok=True)
    driver("cc", "-shared", tmp / f"{pkg}_{name}.o", f"-L{tmp / 'sdklib'}", "-lz", "-lm", "-o", out)
    return out


def test_shared_link_writes_one_object_with_only_the_init_symbol_global(driver):
    so = _ext(driver, "markupsafe", "_speedups")
    head = so.read_bytes()[:18]
    assert head[:4] == b"\x7fELF" and head[16] == 1          # ET_REL: a relocatable object
    assert _globals(so) == {"PyInit__speedups"}              # helper_shared_name went local
    m = read_manifest(so)
    assert m["module"] == "_speedups" and m["init"] == "PyInit__speedups"
    assert m["libraries"] == ["z"] and m["cxx"] is False     # -lm is libc's: not recorded
    event = json.loads((driver.tmp / "events.jsonl").read_text().splitlines()[-1])
    assert event["event"] == "extension" and event["output"] == str(so)


def test_compiles_and_probe_executables_are_passed_to_the_real_compiler(driver):
    (driver.tmp / "probe.c").write_text("const char *zlibVersion(void);\n"
                                        "int main(void) { return zlibVersion()[0] == '1' ? 0 : 1; }\n")
    driver("cc", "probe.c", "-lz", "-o", "probe")          # -L of the SDK's libs is added
    out = subprocess.run(["file", str(driver.tmp / "probe")], capture_output=True, text=True).stdout
    assert "statically linked" in out
    assert subprocess.run([str(driver.tmp / "probe")]).returncode == 0
    assert driver("cc", "--version").stdout  # build systems identify the compiler


def test_a_library_nobody_has_fails_the_link_and_is_recorded(driver):
    (driver.tmp / "m.c").write_text("void *PyInit_m(void) { return 0; }\n")
    driver("cc", "-fPIC", "-c", "m.c", "-o", "m.o")
    proc = driver("cc", "-shared", "m.o", "-lyaml", "-o", "m.so", check=False)
    assert proc.returncode != 0 and "-lyaml" in proc.stderr
    assert not (driver.tmp / "m.so").exists()
    event = json.loads((driver.tmp / "events.jsonl").read_text().splitlines()[-1])
    assert event["event"] == "missing-library" and event["libraries"] == ["yaml"]


def test_the_packages_own_static_archives_are_linked_into_the_object(driver):
    tmp = driver.tmp
    (tmp / "lib.c").write_text("int from_own_lib(void) { return 7; }\n")
    (tmp / "m.c").write_text("int from_own_lib(void);\nvoid *PyInit_m(void) { return (void *)(long)from_own_lib(); }\n")
    driver("cc", "-fPIC", "-c", "lib.c", "-o", "lib.o")
    driver("ar", "rcs", "libown.a", "lib.o")
    driver("cc", "-fPIC", "-c", "m.c", "-o", "m.o")
    driver("cc", "-shared", "m.o", "-L.", "-lown", "-o", "m.so")
    undefined = subprocess.run(["nm", "-u", str(tmp / "m.so")], capture_output=True, text=True).stdout
    assert "from_own_lib" not in undefined and read_manifest(tmp / "m.so")["libraries"] == []


def test_two_modules_with_the_same_last_name_get_unique_init_symbols(driver, tmp_path):
    a = _ext(driver, "pkga", "_speedups")
    b = _ext(driver, "pkgb", "_speedups")
    mods = collect(tmp_path / "site", tmp_path / "objs", lambda p: p.parent.name)
    assert [m.name for m in mods] == ["pkga._speedups", "pkgb._speedups"]
    assert not a.exists() and not b.exists()                  # out of the site dir: Nuitka never sees them
    syms = [m.symbol for m in mods]
    assert len(set(syms)) == 2 and syms[0] == unique_symbol("pkga._speedups")
    for m in mods:
        assert _globals(Path(m.object)) == {m.symbol}
        assert read_manifest(Path(m.object)) is None          # the manifest section is gone
    # Both link into one program, and each init runs its own copy of the same-named helper.
    main = tmp_path / "main.c"
    main.write_text("".join(f"void *{s}(void);\n" for s in syms) +
                    f"int main(void) {{ return ({syms[0]}() == {syms[1]}()) ? 0 : 1; }}\n")
    exe = tmp_path / "main"
    subprocess.run(["musl-gcc", "-static", str(main), *(m.object for m in mods),
                    str(tmp_path / "sdklib" / "libz.a"), "-o", str(exe)], check=True)
    assert subprocess.run([str(exe)]).returncode == 0


def test_module_table_lists_extension_modules_under_their_dotted_names():
    config_c = ('#include "Python.h"\n\nextern PyObject* PyInit_math(void);\n'
                'struct _inittab _PyImport_Inittab[] = {\n    {"math", PyInit_math},\n'
                '    {"_csv", PyInit__csv},\n    /* Sentinel */\n    {0, 0}\n};\n')
    text, removed = pruned_config(config_c, {"math"})
    text = with_extensions(text, {"markupsafe._speedups": "PyInit_forge_x__speedups"})
    assert removed == ["_csv"]
    assert 'extern PyObject* PyInit_forge_x__speedups(void);' in text
    assert text.index('{"markupsafe._speedups", PyInit_forge_x__speedups},') < text.index("{0, 0}")
    assert with_extensions(config_c, {}) == config_c


def test_error_codes_for_extension_failures_are_their_own():
    assert errors.NativeLibraryMissing.exit_code != errors.RustExtensionDependency.exit_code
    codes = [c.exit_code for c in errors.all_error_classes()]
    assert codes.count(errors.NativeLibraryMissing.exit_code) == 1
    assert codes.count(errors.RustExtensionDependency.exit_code) == 1


def test_response_files_are_expanded(driver):
    """meson and ninja put long link lines in `@file` arguments."""
    tmp = driver.tmp
    (tmp / "m.c").write_text("void *PyInit_m(void) { return 0; }\n")
    driver("cc", "-fPIC", "-c", "m.c", "-o", "m.o")
    (tmp / "link.rsp").write_text("-shared m.o -o 'm.cpython-313-x86_64-linux-musl.so'\n")
    driver("cc", "@link.rsp")
    assert read_manifest(tmp / "m.cpython-313-x86_64-linux-musl.so")["init"] == "PyInit_m"


def test_assembly_and_c_sources_given_to_the_shared_link_are_compiled_in(driver):
    """numpy's meson build passes its SVML `.s` files straight to the link of _multiarray_umath."""
    tmp = driver.tmp
    (tmp / "asm.s").write_text(".text\n.globl forge_asm_answer\nforge_asm_answer:\n  mov $42, %eax\n  ret\n")
    (tmp / "m.c").write_text("int forge_asm_answer(void);\n"
                             "void *PyInit_m(void) { return (void *)(long)forge_asm_answer(); }\n")
    driver("cc", "-shared", "-fPIC", "m.c", "asm.s", "-o", "m.so")
    assert _globals(tmp / "m.so") == {"PyInit_m"}
