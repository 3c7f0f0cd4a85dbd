"""Start-up leanness: what `import forge_runtime` (and serving a sync handler) costs in modules.

Run in a fresh interpreter with -S (no site: the venv's editable finder itself imports urllib, re,
pathlib, ...), so the check sees exactly what forge_runtime pulls in.
"""

import os
import subprocess
import sys

RUNTIME_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "runtime")

DENYLIST = [
    "asyncio", "logging", "http", "http.server", "http.client", "email", "urllib", "urllib.parse",
    "json", "inspect", "typing", "ssl", "concurrent", "concurrent.futures", "argparse", "socketserver",
    "traceback", "dataclasses", "re", "enum", "socket", "selectors", "threading", "subprocess", "tempfile",
    "pathlib", "importlib.metadata", "ipaddress", "uuid", "datetime", "locale",
]


def _bare_python(code, tmp_path):
    """Run code with `forge_runtime` importable from a symlink, without site."""
    link = tmp_path / "forge_runtime"
    if not link.exists():
        link.symlink_to(RUNTIME_DIR)
    prelude = f"import sys; sys.path.insert(0, {str(tmp_path)!r}); "
    out = subprocess.run(
        [sys.executable, "-S", "-c", prelude + code], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return out


def test_import_pulls_in_no_heavy_modules(tmp_path):
    out = _bare_python(
        "before = set(sys.modules); import forge_runtime; print(' '.join(sorted(set(sys.modules) - before)))",
        tmp_path,
    )
    new = out.stdout.split()
    assert "forge_runtime" in new
    bad = sorted(m for m in new if m in DENYLIST or m.split(".")[0] in ("asyncio", "email", "logging", "http", "urllib"))
    assert not bad, f"import forge_runtime pulled in {bad}"
    # Only the contract is imported eagerly: the server code loads when run() is called.
    assert not {"forge_runtime._server", "forge_runtime._loop", "forge_runtime._apps"} & set(new)


def test_lean_server_stack_imports(tmp_path):
    """Everything the lean loop needs to serve a sync handler, still without the heavy modules."""
    out = _bare_python(
        "before = set(sys.modules); import forge_runtime; "
        "from forge_runtime import _run, _loop, _server, _apps, _http; "
        "print(' '.join(sorted(set(sys.modules) - before)))",
        tmp_path,
    )
    new = set(out.stdout.split())
    for heavy in ("asyncio", "logging", "http.server", "email", "urllib", "ssl", "typing", "inspect",
                  "socket", "threading", "selectors", "concurrent.futures", "json", "re", "enum",
                  # the pure-Python halves of deque/heappush: forge_runtime uses the C modules
                  "collections", "heapq", "functools", "operator", "reprlib", "keyword"):
        assert heavy not in new, heavy


def test_importtime_report(tmp_path):
    """-X importtime lists forge_runtime and no denylisted module under it."""
    link = tmp_path / "forge_runtime"
    link.symlink_to(RUNTIME_DIR)
    out = subprocess.run(
        [sys.executable, "-S", "-X", "importtime", "-c", f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import forge_runtime"],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    names = [line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines() if line.startswith("import time:")]
    assert "forge_runtime" in names
    idx = names.index("forge_runtime")
    # importtime prints children before their parent; everything up to forge_runtime since the last
    # top-level module is what it pulled in.
    assert not set(names[: idx + 1]) & {"asyncio", "logging", "email", "http.server", "urllib"}


GC_APP = """
import gc

def app(request):
    return {"enabled": gc.isenabled(), "frozen": gc.get_freeze_count()}
"""


def _serve_and_get(tmp_path, code):
    """Run `code` (which serves gcapp.app) in a fresh interpreter and return GET /'s JSON."""
    import json
    import socket
    import time

    link = tmp_path / "forge_runtime"
    if not link.exists():
        link.symlink_to(RUNTIME_DIR)
    (tmp_path / "gcapp.py").write_text(GC_APP)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PORT": str(port), "FORGE_ACCESS_LOG": "0", "PYTHONPATH": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-S", "-c", code], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
                    c.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                    data = b""
                    while chunk := c.recv(65536):
                        data += chunk
                return json.loads(data.split(b"\r\n\r\n", 1)[1])
            except OSError:
                assert proc.poll() is None, proc.stderr.read().decode()
                assert time.monotonic() < deadline, "the server never answered"
                time.sleep(0.05)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_entry_pauses_gc_for_startup_then_freezes_and_resumes(tmp_path):
    """`python -m forge_runtime` (like forge's generated entry) pauses the collector while starting;
    once listening it is back on, with everything start-up made frozen out of its way."""
    state = _serve_and_get(tmp_path, "import sys; from forge_runtime.__main__ import main; "
                                     "sys.exit(main(['gcapp:app']))")
    assert state["enabled"] is True
    assert state["frozen"] > 1000, state


def test_plain_run_leaves_the_collector_alone(tmp_path):
    state = _serve_and_get(tmp_path, "import forge_runtime, gcapp; forge_runtime.run(gcapp.app)")
    assert state == {"enabled": True, "frozen": 0}
