"""Bad input to `forge build`: a clear error, its own exit code, no traceback, no partial output."""

import subprocess
import json
import textwrap
from pathlib import Path

import pytest

from tests.helpers import run_forge


def _no_output(out: Path) -> bool:
    return not out.exists() and not list(out.parent.glob(f".{out.name}.tmp-*"))


def test_missing_file(tmp_path):
    out = tmp_path / "out"
    r = run_forge("build", tmp_path / "nope.py", "-o", out)
    assert r.returncode == 20, r.stderr
    assert "nope.py does not exist" in r.stderr and "Traceback" not in r.stderr
    assert _no_output(out)


def test_syntax_error_shows_file_and_line(tmp_path):
    app = tmp_path / "app.py"
    app.write_text("def app(request):\n    return 'ok'\n\nx = (1,\n")
    out = tmp_path / "out"
    r = run_forge("build", app, "-o", out)
    assert r.returncode == 21, r.stderr
    assert f"{app}:4" in r.stderr and "Traceback" not in r.stderr
    assert _no_output(out)


def test_output_path_that_is_not_a_forge_output(tmp_path):
    app = tmp_path / "app.py"
    app.write_text("def app(request):\n    return 'ok'\n")
    out = tmp_path / "precious"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    r = run_forge("build", app, "-o", out)
    assert r.returncode == 30, r.stderr
    assert str(out) in r.stderr and "-o" in r.stderr
    assert (out / "notes.txt").read_text() == "mine" and sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_no_sdk_says_how_to_build_it(tmp_path):
    app = tmp_path / "app.py"
    app.write_text("def app(request):\n    return 'ok'\n")
    out = tmp_path / "out"
    r = run_forge("build", app, "-o", out, env={"FORGE_CACHE_DIR": str(tmp_path / "empty-cache")})
    assert r.returncode == 15, r.stderr
    assert "forge toolchain build" in r.stderr and "--build-sdk" in r.stderr
    assert _no_output(out)


@pytest.mark.sdk
def test_unresolvable_import(sdk, tmp_path):
    app = tmp_path / "app.py"
    app.write_text("import json\nimport definitely_not_a_module_xyz\n\ndef app(request):\n    return 'ok'\n")
    out = tmp_path / "out"
    r = run_forge("build", app, "-o", out)
    assert r.returncode == 22, r.stderr
    assert f"{app}:2" in r.stderr and "definitely_not_a_module_xyz" in r.stderr
    assert _no_output(out)


@pytest.mark.sdk
def test_optional_import_is_not_an_error_but_a_missing_one_is(sdk, tmp_path):
    from forge.analysis import collect_imports

    app = tmp_path / "app.py"
    app.write_text("try:\n    import ujson as json\nexcept ImportError:\n    import json\n")
    sites = collect_imports(app)
    assert [(s.module, s.optional) for s in sites] == [("ujson", True), ("json", False)]


@pytest.mark.sdk
def test_top_level_c_extension_module_is_built_in(sdk, tmp_path):
    """A dependency that is one top-level C extension module: built from source, linked in as a
    built-in, and imported by the workload directly (the import check knows it)."""
    pkg = tmp_path / "fastthing"
    (pkg / "src").mkdir(parents=True)
    (pkg / "src" / "fastthing.c").write_text(textwrap.dedent("""
        #include <Python.h>
        static PyObject *answer(PyObject *self, PyObject *args) { return PyLong_FromLong(42); }
        static PyMethodDef methods[] = {{"answer", answer, METH_NOARGS, NULL}, {NULL, NULL, 0, NULL}};
        static struct PyModuleDef m = {PyModuleDef_HEAD_INIT, "fastthing", NULL, -1, methods};
        PyMODINIT_FUNC PyInit_fastthing(void) { return PyModule_Create(&m); }
    """))
    (pkg / "setup.py").write_text(
        "from setuptools import setup, Extension\n"
        "setup(name='fastthing', version='1.0', ext_modules=[Extension('fastthing', ['src/fastthing.c'])])\n")
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "app.py").write_text("import sys\nimport fastthing\n\n"
                                 "print(fastthing.answer(), 'fastthing' in getattr(sys, 'builtin_module_names'))\n")
    (proj / "requirements.txt").write_text(f"fastthing @ file://{pkg}\n")
    out = tmp_path / "out"
    r = run_forge("build", proj, "-o", out, "--json", timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    summary = json.loads(r.stdout)
    assert "fastthing" in json.dumps(summary.get("extension_modules"))
    run = subprocess.run([summary["binary"]], capture_output=True, text=True, env={}, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["42", "True"]


def test_syntax_error_in_a_project_without_entry(tmp_path):
    (tmp_path / "app.py").write_text("def f(:\n    pass\n")
    out = tmp_path / "out"
    r = run_forge("build", tmp_path, "-o", out)
    assert r.returncode == 21, r.stderr
    assert f"{tmp_path / 'app.py'}:1" in r.stderr and "Traceback" not in r.stderr


def test_unquoted_config_value_is_a_config_error(tmp_path):
    (tmp_path / "app.py").write_text("def app(request):\n    return 'ok'\n")
    (tmp_path / "pyproject.toml").write_text('[tool.forge]\nentry = "app:app"\npython = 3.11\n')
    r = run_forge("build", tmp_path, "-o", tmp_path / "out")
    assert r.returncode == 17, r.stderr
    assert 'python = "3.11"' in r.stderr


def test_unknown_allocator_is_a_config_error(tmp_path):
    (tmp_path / "app.py").write_text("def app(request):\n    return 'ok'\n")
    (tmp_path / "pyproject.toml").write_text('[tool.forge]\nentry = "app:app"\nallocator = "jemalloc"\n')
    r = run_forge("build", tmp_path, "-o", tmp_path / "out")
    assert r.returncode == 17, r.stderr
    assert "'jemalloc'" in r.stderr and "'musl'" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists()


def test_typed_app_assignment_is_served(tmp_path):
    from forge.workload import resolve

    (tmp_path / "app.py").write_text("class App:\n    def __call__(self, r):\n        return 'ok'\n\napp: App = App()\n")
    assert resolve(tmp_path / "app.py").attr == "app"


def test_other_platforms_imports_are_optional(tmp_path):
    from forge.analysis import collect_imports

    app = tmp_path / "app.py"
    app.write_text("import sys\nif sys.platform == 'win32':\n    import winreg\nelse:\n    import fcntl\n")
    sites = {s.module: s.optional for s in collect_imports(app)}
    assert sites == {"sys": False, "winreg": True, "fcntl": True}


@pytest.mark.sdk
def test_package_that_prints_on_import_does_not_confuse_analysis(sdk, tmp_path):
    from forge.analysis import analyse

    (tmp_path / "noisy").mkdir()
    (tmp_path / "noisy" / "__init__.py").write_text("print('banner!')\n")
    (tmp_path / "noisy" / "sub.py").write_text("X = 1\n")
    app = tmp_path / "app.py"
    app.write_text("try:\n    import noisy.sub\nexcept ImportError:\n    pass\nimport noisy\n")
    analyse([app], sdk.python, [tmp_path])  # no exception: the banner is not taken for the answer
