"""Dependencies with C, Cython and C++ extension modules, built from their sdists by forge's compiler
driver and linked into the static binary as built-in modules (docs/extensions.md). Real packages
from PyPI, compiled, then run: in a container (read-only, as 65532) for the Flask app, directly for
the rest. Heavy builds (numpy, ...) only with FORGE_TEST_HEAVY=1."""

import contextlib
import json
import os
import subprocess
from pathlib import Path

import pytest
import requests

from forge.elfcheck import static_problems
from tests.helpers import free_port, run_forge, wait_http
from tests.plugins.docker_engine import running

pytestmark = pytest.mark.sdk
ROOT = Path(__file__).resolve().parent.parent
FLASK = ROOT / "benchmarks" / "workloads" / "flask"
HEAVY = pytest.mark.skipif(os.environ.get("FORGE_TEST_HEAVY") != "1", reason="heavy: FORGE_TEST_HEAVY=1")


def _build(*args, timeout=2400) -> dict:
    r = run_forge("build", *map(str, args), "--json", timeout=timeout)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    return json.loads(r.stdout)


def _program(tmp_path: Path, name: str, requirements: list[str], code: str) -> Path:
    proj = tmp_path / name
    proj.mkdir()
    (proj / "requirements.txt").write_text("\n".join(requirements) + "\n")
    (proj / "pyproject.toml").write_text(f'[project]\nname = "{name}"\nversion = "0"\ndependencies = []\n'
                                         f'[tool.forge]\nentry = "main"\n')
    (proj / "main.py").write_text(code)
    return proj


def _run(binary: str) -> dict:
    proc = subprocess.run([binary], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def _served(client, image_archive: str, tag: str):
    """The built image loaded and run as a user would deploy it: read-only, as 65532, on a free port."""
    with open(image_archive, "rb") as fh:
        client.images.load(fh.read())
    port = free_port()
    with running(client, tag, read_only=True, user="65532", ports={"8080/tcp": ("127.0.0.1", port)}) as c:
        yield c, port


@pytest.fixture(scope="module")
def flask_build(sdk, tmp_path_factory):
    return _build(FLASK, "-o", tmp_path_factory.mktemp("flask") / "out", "--format", "docker-archive",
                  "--tag", "forge-test/flask-ext:latest")


def test_flask_build_links_markupsafe_speedups(flask_build):
    assert flask_build["extension_modules"] == ["markupsafe._speedups"]
    assert static_problems(Path(flask_build["binary"])) == []
    sbom = json.loads(Path(flask_build["sbom"]).read_text())
    ms = next(p for p in sbom["packages"] if p["name"].lower() == "markupsafe")
    assert len(ms["checksums"][0]["checksumValue"]) == 64 and "sdist" in ms["comment"]


@pytest.mark.docker
def test_flask_app_renders_with_c_speedups_in_container(flask_build, docker_client):
    with _served(docker_client, flask_build["image"], "forge-test/flask-ext:latest") as (c, port):
        page = wait_http(f"http://127.0.0.1:{port}/?who=<i>me</i>", timeout=30.0)
        assert page.status_code == 200, c.logs()[-2000:]
        assert "<li class=\"odd\">item 0: &lt;b&gt;0&lt;/b&gt; &amp; more</li>" in page.text
        assert "&lt;i&gt;me&lt;/i&gt;" in page.text
        native = requests.get(f"http://127.0.0.1:{port}/native", timeout=5).json()
        assert native == {"speedups_builtin": True, "speedups_loaded": True,
                          "escape_inner_module": "markupsafe._speedups",
                          "escape_inner_type": "builtin_function_or_method",
                          "escaped": "&lt;a href=&#39;x&#39;&gt;&amp;&lt;/a&gt;"}


LITESTAR_APP = '''
import sys
import msgspec
from litestar import Litestar, get


@get("/")
async def index() -> dict:
    return {"hello": "litestar", "msgspec_core": "msgspec._core" in getattr(sys, "builtin_module_names"),
            "encode_type": type(msgspec.json.encode).__name__, "encoded": msgspec.json.encode({"a": 1}).decode()}


app = Litestar([index])
'''


@pytest.mark.docker
def test_litestar_app_with_msgspec_compiled_in_container(sdk, tmp_path, docker_client):
    """A new user's Litestar app (app.py + requirements.txt `litestar`): msgspec._core is built in."""
    proj = tmp_path / "litestar"
    proj.mkdir()
    (proj / "requirements.txt").write_text("litestar==2.25.0\n")
    (proj / "app.py").write_text(LITESTAR_APP)
    summary = _build(proj / "app.py", "-o", tmp_path / "out", "--format", "docker-archive",
                     "--tag", "forge-test/litestar-ext:latest")
    assert {"msgspec._core", "multidict._multidict"} <= set(summary["extension_modules"])
    with _served(docker_client, summary["image"], "forge-test/litestar-ext:latest") as (c, port):
        page = wait_http(f"http://127.0.0.1:{port}/", timeout=30.0)
        assert page.status_code == 200, c.logs()[-2000:]
        assert page.json() == {"hello": "litestar", "msgspec_core": True,
                               "encode_type": "builtin_function_or_method", "encoded": '{"a":1}'}


MSGPACK_AND_SAME_NAMES = '''
import json, sys, types
import markupsafe, msgpack, simplejson
from msgpack import _cmsgpack
packed = msgpack.packb({"a": [1, 2.5, "\\u00e9", b"x"]})
print(json.dumps({
    "builtins": sorted(m for m in getattr(sys, "builtin_module_names") if "." in m),
    "packb_is_python": isinstance(msgpack.packb, types.FunctionType),
    "packer_module": msgpack.Packer.__module__,
    "unpackb_type": type(msgpack.unpackb).__name__,
    "roundtrip": msgpack.unpackb(packed) == {"a": [1, 2.5, "\\u00e9", b"x"]},
    "markupsafe": str(markupsafe.escape("<&>")),
    "simplejson_c": simplejson._speedups.__name__ if hasattr(simplejson, "_speedups") else None,
    "simplejson_scanner_c": simplejson.scanner.c_make_scanner is not None,
    "simplejson": simplejson.loads(simplejson.dumps({"k": [1, None]})),
}))
'''


def test_msgpack_and_two_modules_with_the_same_last_name(each_sdk, tmp_path):
    """msgpack (Cython), and markupsafe._speedups + simplejson._speedups in one binary (simplejson
    also has a pure wheel; forge builds the sdist because compiled wheels of that version exist for
    the SDK's Python: 3.20.2 has none for 3.14, so 3.14 got the pure wheel; 4.3.0 has them for both).
    On every SDK under test (FORGE_TEST_PYTHONS): the dotted built-ins must be found by the import
    system of each CPython version forge supports."""
    proj = _program(tmp_path, "samenames", ["msgpack==1.1.2", "markupsafe==3.0.4", "simplejson==4.3.0"],
                    MSGPACK_AND_SAME_NAMES)
    minor = ".".join(each_sdk.version.split(".")[:2])
    summary = _build(proj, "--python", minor, "-o", tmp_path / "out")
    assert summary["python"] == each_sdk.version
    assert summary["extension_modules"] == ["markupsafe._speedups", "msgpack._cmsgpack", "simplejson._speedups"]
    out = _run(summary["binary"])
    assert out["builtins"] == ["markupsafe._speedups", "msgpack._cmsgpack", "simplejson._speedups"]
    # msgpack.packb itself is Python in msgpack 1.x (it calls Packer); Packer and unpackb are Cython's.
    assert out["packer_module"] == "msgpack._cmsgpack"
    assert out["unpackb_type"] == "cython_function_or_method" and out["unpackb_type"] != "function"
    assert out["roundtrip"] is True and out["markupsafe"] == "&lt;&amp;&gt;"
    assert out["simplejson_scanner_c"] is True and out["simplejson"] == {"k": [1, None]}


AIOHTTP_STACK = '''
import json, sys
import multidict, yarl, propcache, frozenlist
md = multidict.MultiDict([("a", "1"), ("a", "2")])
url = yarl.URL("https://example.com/p?q=1") / "x"
fl = frozenlist.FrozenList([1, 2]); fl.freeze()
print(json.dumps({
    "builtins": sorted(m for m in getattr(sys, "builtin_module_names") if "." in m),
    "multidict_impl": type(md).__module__,
    "getall": md.getall("a"),
    "url": str(url.with_query(a="b")),
    "frozen": fl.frozen, "frozenlist_impl": type(fl).__module__,
}))
'''


@HEAVY
def test_multidict_yarl_propcache_frozenlist_are_compiled(sdk, tmp_path):
    """The aiohttp stack (Cython-generated C). Heavy: the default set keeps Cython through the
    Litestar test (multidict._multidict)."""
    proj = _program(tmp_path, "aiostack", ["multidict==6.7.0", "yarl==1.22.0", "propcache==0.4.1",
                                           "frozenlist==1.8.0", "idna==3.11"], AIOHTTP_STACK)
    summary = _build(proj, "-o", tmp_path / "out")
    out = _run(summary["binary"])
    for mod in ("multidict._multidict", "yarl._quoting_c", "propcache._helpers_c", "frozenlist._frozenlist"):
        assert mod in out["builtins"], out["builtins"]
    assert out["multidict_impl"] == "multidict._multidict" and out["getall"] == ["1", "2"]
    assert out["url"] == "https://example.com/p/x?a=b"
    assert out["frozen"] is True and out["frozenlist_impl"] == "frozenlist._frozenlist"  # C++ (Cython)


def test_a_library_forge_does_not_have_is_one_paragraph_and_nothing_is_written(sdk, tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "nolib").mkdir(parents=True)
    (pkg / "pyproject.toml").write_text('[build-system]\nrequires = ["setuptools"]\n'
                                        'build-backend = "setuptools.build_meta"\n')
    (pkg / "setup.py").write_text(
        'from setuptools import Extension, setup\n'
        'setup(name="needs-nolib", version="1.0", packages=["nolib"], ext_modules=[Extension('
        '"nolib._fast", ["nolib/_fast.c"], libraries=["forgenosuchlib"])])\n')
    (pkg / "nolib" / "__init__.py").write_text("")
    (pkg / "nolib" / "_fast.c").write_text(
        '#include <Python.h>\nstatic struct PyModuleDef m = {PyModuleDef_HEAD_INIT, "_fast"};\n'
        'PyMODINIT_FUNC PyInit__fast(void) { return PyModule_Create(&m); }\n')
    proj = _program(tmp_path, "nolibapp", [str(pkg)], "import nolib\n")
    r = run_forge("build", proj, "-o", tmp_path / "out", timeout=600)
    assert r.returncode == 90, r.stderr[-3000:]
    msg = r.stderr.strip().splitlines()[-1]
    assert "needs-nolib needs the C library libforgenosuchlib" in msg and "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists()


def test_a_rust_extension_names_the_package_that_needs_rust(sdk, tmp_path):
    proj = _program(tmp_path, "fastapiapp", ["fastapi==0.115.0"], "import fastapi\n")
    r = run_forge("build", proj, "-o", tmp_path / "out", timeout=600)
    assert r.returncode == 91, r.stderr[-3000:]
    msg = r.stderr.strip().splitlines()[-1]
    assert msg.count("pydantic-core") >= 2 and "maturin could not" not in msg
    assert "x86_64-unknown-linux-musl" in msg and "pydantic<2" in msg
    assert not (tmp_path / "out").exists()


CFFI_PROGRAM = '''
import json, sys
import cffi
ffi = cffi.FFI()
ffi.cdef("typedef struct { int a; double b; } pt;")
p = ffi.new("pt *", {"a": 3, "b": 1.5})
print(json.dumps({"cffi": [p.a, p.b, ffi.sizeof("pt")],
                  "backend": sys.modules["_cffi_backend"].__spec__.origin}))
'''


def test_cffi_backend_is_built_in_and_linked_with_the_sdks_libffi(sdk, tmp_path):
    summary = _build(_program(tmp_path, "cffiapp", ["cffi==2.0.0"], CFFI_PROGRAM), "-o", tmp_path / "out")
    assert summary["extension_modules"] == ["_cffi_backend"]
    assert _run(summary["binary"]) == {"cffi": [3, 1.5, 16], "backend": "built-in"}


ARGON_PROGRAM = '''
import json, sys
from _argon2_cffi_bindings import ffi, lib
out = ffi.new("uint8_t[]", 16)
salt = b"somesalt12345678"
rc = lib.argon2_hash(1, 64, 1, b"password", 8, salt, len(salt), out, 16, ffi.NULL, 0, lib.Argon2_id, 0x13)
print(json.dumps({"rc": rc, "hash": bytes(out).hex(), "builtin": sorted(m for m in getattr(sys, "builtin_module_names") if "cffi" in m)}))
'''


def test_cffi_out_of_line_module_is_built_in(sdk, tmp_path):
    """argon2-cffi-bindings builds an out-of-line (API mode) module with `cffi_modules=`: its build
    runs `FFI()`, so pip runs under the SDK interpreter relinked with _cffi_backend built in
    (forge.deps._cffi_build_python); the module it compiles is linked in like any other."""
    summary = _build(_program(tmp_path, "argon", ["argon2-cffi-bindings==25.1.0"], ARGON_PROGRAM),
                     "-o", tmp_path / "out")
    assert summary["extension_modules"] == ["_argon2_cffi_bindings._ffi", "_cffi_backend"]
    result = _run(summary["binary"])
    assert result["rc"] == 0 and len(result["hash"]) == 32
    assert result["builtin"] == ["_argon2_cffi_bindings._ffi", "_cffi_backend"]


CXX_EXT = r'''
#include <Python.h>
#include <map>
#include <stdexcept>
#include <string>

static std::map<std::string, int> table = {{"one", 1}, {"two", 2}};   // a static constructor

static int lookup(const std::string &k) {
    auto it = table.find(k);
    if (it == table.end()) throw std::out_of_range("no key " + k);
    return it->second;
}

static PyObject *get(PyObject *self, PyObject *arg) {
    const char *k = PyUnicode_AsUTF8(arg);
    if (!k) return NULL;
    try {
        return PyLong_FromLong(lookup(k));
    } catch (const std::out_of_range &e) {            // caught: needs --eh-frame-hdr + libunwind
        PyErr_SetString(PyExc_KeyError, e.what());
        return NULL;
    }
}

static PyMethodDef methods[] = {{"get", get, METH_O, NULL}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef mod = {PyModuleDef_HEAD_INIT, "_table", NULL, -1, methods};
PyMODINIT_FUNC PyInit__table(void) { return PyModule_Create(&mod); }
'''

CXX_PROGRAM = '''
import json, sys
from cxxdemo import _table
try:
    _table.get("three")
    caught = None
except KeyError as exc:
    caught = str(exc)
print(json.dumps({"one": _table.get("one"), "two": _table.get("two"), "caught": caught,
                  "builtin": "cxxdemo._table" in getattr(sys, "builtin_module_names")}))
'''


def test_cxx_extension_static_constructors_and_exceptions(sdk, tmp_path):
    pkg = tmp_path / "cxxpkg"
    (pkg / "cxxdemo").mkdir(parents=True)
    (pkg / "pyproject.toml").write_text('[build-system]\nrequires = ["setuptools"]\n'
                                        'build-backend = "setuptools.build_meta"\n')
    (pkg / "setup.py").write_text(
        'from setuptools import Extension, setup\n'
        'setup(name="cxxdemo", version="1.0", packages=["cxxdemo"], ext_modules=[Extension('
        '"cxxdemo._table", ["cxxdemo/_table.cpp"], language="c++", extra_compile_args=["-std=c++17"])])\n')
    (pkg / "cxxdemo" / "__init__.py").write_text("")
    (pkg / "cxxdemo" / "_table.cpp").write_text(CXX_EXT)
    summary = _build(_program(tmp_path, "cxxapp", [str(pkg)], CXX_PROGRAM), "-o", tmp_path / "out")
    assert summary["extension_modules"] == ["cxxdemo._table"]
    assert _run(summary["binary"]) == {"one": 1, "two": 2, "caught": "'no key three'", "builtin": True}


PSUTIL_PROGRAM = '''
import json, sys
import psutil
mi = psutil.Process().memory_info()
print(json.dumps({"builtins": sorted(m for m in getattr(sys, "builtin_module_names") if m.startswith("psutil")),
                  "rss": mi.rss > 0, "cpus": psutil.cpu_count() > 0,
                  "cext": psutil._psplatform.cext.__spec__.origin}))
'''


def test_psutil_per_platform_module_works(sdk, tmp_path):
    """Nuitka imports psutil while compiling it (anti-bloat rules): it runs under the SDK interpreter
    relinked with the extension modules (forge.extensions.build_interpreter)."""
    summary = _build(_program(tmp_path, "psutilapp", ["psutil==7.1.3"], PSUTIL_PROGRAM), "-o", tmp_path / "out")
    assert summary["extension_modules"] == ["psutil._psutil_linux"]
    assert _run(summary["binary"]) == {"builtins": ["psutil._psutil_linux"], "rss": True, "cpus": True,
                                       "cext": "built-in"}


NUMPY_PROGRAM = '''
import json, sys
import numpy as np
a = np.array([[4.0, 7.0], [2.0, 6.0]])
f = np.fft.fft(np.array([1.0, 0.0, -1.0, 0.0]))
r = np.random.default_rng(1).normal(size=1000)
print(json.dumps({"inv": np.round(np.linalg.inv(a) @ a, 6).tolist(), "fft": [round(abs(x), 6) for x in f],
                  "normal_ok": abs(float(r.mean())) < 0.2,
                  "core": "numpy._core._multiarray_umath" in getattr(sys, "builtin_module_names")}))
'''


@HEAVY
def test_numpy_through_meson_with_c_and_cxx(sdk, tmp_path):
    """numpy's meson build (C and C++, no BLAS: its bundled lapack-lite). Measured: 356 s uncached (ccache
    warm), binary 34.5 MiB, image 19.8 MiB gz (docs/extensions.md)."""
    summary = _build(_program(tmp_path, "npapp", ["numpy==2.3.5"], NUMPY_PROGRAM), "-o", tmp_path / "out",
                     timeout=5400)
    assert "numpy._core._multiarray_umath" in summary["extension_modules"]
    assert _run(summary["binary"]) == {"inv": [[1.0, 0.0], [0.0, 1.0]], "fft": [0.0, 2.0, 0.0, 2.0],
                                       "normal_ok": True, "core": True}
