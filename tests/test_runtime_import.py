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
                  "socket", "threading", "selectors", "concurrent.futures", "json", "re", "enum"):
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
