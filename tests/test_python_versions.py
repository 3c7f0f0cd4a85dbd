"""Current, patched CPython: each SDK version carries its security fixes, passes CPython's own
regression tests, builds and serves a workload; the version is chosen the way the docs say."""

import json
import os
import subprocess
import textwrap
import time
import urllib.request

import pytest

from forge import pip_python
from forge.build import options_from
from forge.sdk.sources import CPYTHON, DEFAULT_PYTHON, cpython_source
from tests.helpers import free_port, run_forge, wait_http

HELLO = os.path.join(os.path.dirname(__file__), "..", "examples", "hello")

# CPython's suites for what workloads lean on most; run inside the static SDK interpreter.
REGRESSION_TESTS = ("test_json", "test_ssl", "test_hashlib", "test_sqlite3", "test_zlib", "test_decimal",
                    "test_datetime", "test_urllib", "test_urllib2", "test_urlparse", "test_email")


@pytest.mark.sdk
def test_cve_2023_24329_is_fixed(each_sdk):
    # urlsplit() of a URL with leading blanks: '' before 3.11.4 (a filter bypass), 'https' after.
    r = subprocess.run([str(each_sdk.python), "-c",
                        "import urllib.parse; print(urllib.parse.urlsplit(' https://example.com/').scheme)"],
                       capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "https"
    assert each_sdk.version == cpython_source(each_sdk.version).version


@pytest.mark.sdk
def test_cpython_regression_tests_pass_in_the_sdk(each_sdk, tmp_path):
    assert (each_sdk.cpython_tests / "test" / "__init__.py").is_file()
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(each_sdk.cpython_tests), "HOME": str(tmp_path)}
    r = subprocess.run([str(each_sdk.python), "-m", "test", "-j2", "--timeout=600", *REGRESSION_TESTS],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=1800)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "Result: SUCCESS" in r.stdout


@pytest.mark.sdk
def test_hello_builds_and_serves_on_each_sdk(each_sdk, tmp_path):
    minor = ".".join(each_sdk.version.split(".")[:2])
    r = run_forge("build", HELLO, "--python", minor, "-o", tmp_path / "out", "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout)
    assert summary["python"] == each_sdk.version
    sbom = json.loads((tmp_path / "out" / "sbom.spdx.json").read_text())
    assert each_sdk.version in json.dumps(sbom)
    port = free_port()
    proc = subprocess.Popen([summary["binary"]], env={"PORT": str(port), "HOST": "127.0.0.1"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as resp:
                    assert resp.read() == b"hello from forge"
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read().decode()
                time.sleep(0.1)
    finally:
        proc.terminate()
        assert proc.wait(10) == 0


def _project(tmp_path, requires_python=None, tool_python=None):
    (tmp_path / "app.py").write_text("def app(request):\n    return 'ok'\n")
    lines = ['[project]', 'name = "v"', 'version = "0"']
    if requires_python:
        lines.append(f'requires-python = "{requires_python}"')
    lines += ['[tool.forge]', 'entry = "app:app"']
    if tool_python:
        lines.append(f'python = "{tool_python}"')
    (tmp_path / "pyproject.toml").write_text("\n".join(lines) + "\n")
    return tmp_path


@pytest.mark.parametrize("spec, chosen", [(">=3.11", DEFAULT_PYTHON), (">=3.13", "3.13"), (">=3.14", "3.14"),
                                          ("~=3.14.0", "3.14"), ("<3.14", "3.13")])
def test_requires_python_selects_the_sdk(tmp_path, spec, chosen):
    assert options_from(_project(tmp_path, requires_python=spec)).python == chosen


def test_selection_order_cli_then_tool_then_requires_python(tmp_path):
    d = _project(tmp_path, requires_python=">=3.13", tool_python="3.14")
    assert options_from(d).python == "3.14"
    assert options_from(d, python="3.13").python == "3.13"


def test_requires_python_that_no_sdk_satisfies_is_refused(tmp_path):
    d = _project(tmp_path, requires_python=">=3.15")
    r = run_forge("build", d, "-o", tmp_path / "out")
    assert r.returncode == 19, r.stderr
    assert ">=3.15" in r.stderr and all(m in r.stderr for m in CPYTHON) and "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists()


def test_python_311_is_refused_with_the_supported_versions(tmp_path):
    r = run_forge("build", _project(tmp_path), "--python", "3.11", "-o", tmp_path / "out")
    assert r.returncode == 10, r.stderr
    assert "3.13" in r.stderr and "3.14" in r.stderr and "Traceback" not in r.stderr


def test_pip_version_dump_is_read_as_one_requires_python_mismatch():
    log = textwrap.dedent("""\
        ERROR: Ignored the following versions that require a different python version: 5.2 Requires-Python >=3.10; 6.0 Requires-Python >=3.12; 6.1.3 Requires-Python >=3.12
        ERROR: Could not find a version that satisfies the requirement django==6.1.3 (from versions: 1.1.3, 4.2.1, 4.2.27)
        ERROR: No matching distribution found for django==6.1.3
        """)
    m = pip_python.find_mismatch(log)
    assert (m.requirement, m.name, m.requires_python, m.compatible) == ("django==6.1.3", "django", ">=3.12", "4.2.27")
    text = pip_python.explain(m, "3.11.2", "/x/pip.log")
    assert "django==6.1.3" in text and ">=3.12" in text and "3.11.2" in text and "--python 3.1" in text
    # A requirement that does not exist at all is not a Python mismatch.
    assert pip_python.find_mismatch("ERROR: Could not find a version that satisfies the requirement nosuch==1 "
                                    "(from versions: none)\n") is None


@pytest.mark.sdk
def test_dependency_that_needs_a_newer_python_gets_one_paragraph(sdk, tmp_path):
    pkg = tmp_path / "needs_new"
    pkg.mkdir()
    (pkg / "pyproject.toml").write_text(textwrap.dedent("""\
        [build-system]
        requires = ["setuptools"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "needs-new"
        version = "1.0"
        requires-python = ">=3.99"
        """))
    app = tmp_path / "app"
    app.mkdir()
    (app / "app.py").write_text("def app(request):\n    return 'ok'\n")
    (app / "requirements.txt").write_text(f"{pkg}\n")
    r = run_forge("build", app / "app.py", "-o", tmp_path / "out")
    assert r.returncode == 28, r.stderr[-2000:]
    assert "needs-new" in r.stderr and ">=3.99" in r.stderr and sdk.version in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "out").exists()


@pytest.mark.sdk
def test_django_6_builds_on_the_default_sdk(sdk, tmp_path):
    (tmp_path / "app.py").write_text("import django\nprint(django.get_version())\n")
    (tmp_path / "requirements.txt").write_text("django>=6,<7\n")
    r = run_forge("build", tmp_path / "app.py", "-o", tmp_path / "out", "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout)
    pinned = next(d.split("==")[1] for d in summary["dependencies"] if d.lower().startswith("django=="))
    assert pinned.startswith("6.")
    run = subprocess.run([summary["binary"]], capture_output=True, text=True, env={}, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == pinned


@pytest.mark.sdk
def test_quart_latest_builds_and_serves_on_the_default_sdk(sdk, tmp_path):
    """Quart's latest release needs Python >= 3.13: an ASGI app that 3.11 could not install."""
    (tmp_path / "app.py").write_text(textwrap.dedent("""\
        from quart import Quart, jsonify, request

        app = Quart(__name__)


        @app.route("/")
        async def index():
            return "hello from quart"


        @app.route("/echo")
        async def echo():
            return jsonify(q=request.args.get("q"))
        """))
    (tmp_path / "requirements.txt").write_text("quart\n")
    r = run_forge("build", tmp_path / "app.py", "-o", tmp_path / "out", "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout)
    assert summary["verified"] is True
    assert any(d.lower().startswith("quart==") for d in summary["dependencies"])
    port = free_port()
    proc = subprocess.Popen([summary["binary"]], env={"PORT": str(port)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        assert wait_http(f"http://127.0.0.1:{port}/").text == "hello from quart"
        assert wait_http(f"http://127.0.0.1:{port}/echo?q=forge").json() == {"q": "forge"}
    finally:
        proc.terminate()
        proc.wait(10)
