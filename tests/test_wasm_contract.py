"""The wasm target's pieces that run on the host: the WASI JSON-lines entry (forge_runtime._wasi)
exercised in-process with CPython, the unsupported-use check, and the strict patch applier. No
compiler, no SDK: these run in seconds. The compiled module is tested in test_wasm_build.py."""

import base64
import io
import json
import sys
import textwrap
from pathlib import Path

import pytest

from forge.wasm.patch import PatchFailed, apply
from forge.wasm.unsupported import check
from forge_runtime import Response
from forge_runtime import _wasi

ROOT = Path(__file__).resolve().parent.parent


def _load_hello():
    """examples/hello/app.py under a name of its own (no sys.path change, no `app` in sys.modules)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("forge_example_hello_app", ROOT / "examples/hello/app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hello = _load_hello()


def ask(app, *requests, kind="handler"):
    lines = b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in requests)
    out = io.BytesIO()
    n = _wasi.serve(app, io.BytesIO(lines), out) if kind == "handler" else None
    if kind != "handler":
        _wasi._kind = kind
        try:
            n = _wasi.serve(app, io.BytesIO(lines), out)
        finally:
            _wasi._kind = None
    replies = [json.loads(line) for line in out.getvalue().splitlines()]
    assert n == len(replies)
    return replies


def test_hello_routes():
    r = ask(hello.app, {"id": 1, "path": "/"}, {"id": "b", "method": "GET", "path": "/healthz"},
            {"method": "POST", "path": "/echo", "body": '{"a": [1, 2]}',
             "headers": [["Content-Type", "application/json"]]},
            {"path": "/missing"})
    assert r[0] == {"id": 1, "status": 200, "headers": [["content-type", "text/plain; charset=utf-8"]],
                    "body": "hello from forge"}
    assert r[1]["id"] == "b" and json.loads(r[1]["body"])["ok"] is True
    assert json.loads(r[2]["body"]) == {"echo": {"a": [1, 2]}, "bytes": 13}
    assert "id" not in r[3] and r[3]["status"] == 404 and r[3]["body"] == "not found\n"


def test_request_fields():
    seen = {}

    def app(req):
        seen.update(method=req.method, path=req.path, raw=req.raw_path, qs=req.query_string, q=req.query,
                    ct=req.headers.get("content-type"), body=req.body, host=req.host)
        return b""

    ask(app, {"method": "put", "path": "/a%20b/c?x=1&y=%C3%A9", "headers": {"Host": "ex.com", "Content-Type": "a/b"},
              "body_base64": base64.b64encode(b"\x00\xff").decode()})
    assert seen == {"method": "PUT", "path": "/a b/c", "raw": b"/a%20b/c", "qs": b"x=1&y=%C3%A9",
                    "q": {"x": "1", "y": "é"}, "ct": "a/b", "body": b"\x00\xff", "host": b"ex.com"}


def test_binary_body_goes_back_as_base64_and_text_as_text():
    r = ask(lambda req: Response(b"\x89PNG\xff", 201, {"x-a": "1"}), {"path": "/"})[0]
    assert r["status"] == 201 and base64.b64decode(r["body_base64"]) == b"\x89PNG\xff" and "body" not in r
    assert ["x-a", "1"] in r["headers"]
    r = ask(lambda req: {"ü": 1}, {"path": "/"})[0]
    assert json.loads(r["body"]) == {"ü": 1}
    r = ask(lambda req: None, {"path": "/", "method": "GET"})[0]
    assert r["status"] == 204 and r["body"] == ""


def test_streamed_body_is_collected():
    def gen():
        yield "a"
        yield b"b"

    async def agen():
        yield "c"

    assert ask(lambda req: Response.stream(gen()), {"path": "/"})[0]["body"] == "ab"
    assert ask(lambda req: Response.stream(agen()), {"path": "/"})[0]["body"] == "c"


def test_handler_exception_is_500_with_traceback_on_stderr(capsys):
    def app(req):
        if req.path == "/boom":
            raise ValueError("kaput")
        return "fine"

    r = ask(app, {"path": "/boom"}, {"path": "/ok"})
    assert r[0] == {"status": 500, "headers": [["content-type", "text/plain; charset=utf-8"]],
                    "body": "Internal Server Error\n"}
    assert r[1]["body"] == "fine"       # the instance keeps serving
    event = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert event["event"] == "error" and event["where"] == "handler GET /boom"
    assert "ValueError: kaput" in event["traceback"]


@pytest.mark.parametrize("line, reason", [
    (b"not json", "not a JSON object"),
    (b"[1, 2]", "must be a JSON object"),
    (b'{"path": 7}', "path must be a string"),
    (b'{"headers": [["a"]]}', "[name, value] pair"),
    (b'{"headers": 5}', "headers must be"),
    (b'{"body_base64": "!!!"}', "not valid base64"),
    (b'{"headers": [["a", "\\u20ac"]]}', "not latin-1"),
])
def test_bad_request_lines_get_400(line, reason):
    r = ask(lambda req: "x", line, {"path": "/"})
    assert r[0]["status"] == 400 and reason in r[0]["body"]
    assert r[1]["status"] == 200


def test_blank_lines_are_skipped_and_eof_ends():
    out = io.BytesIO()
    assert _wasi.serve(lambda req: "x", io.BytesIO(b"\n  \n{}\n\n"), out) == 1
    assert json.loads(out.getvalue())["body"] == "x"


def test_async_handler_without_event_loop():
    async def helper():
        return "from a coroutine"

    async def app(req):
        return await helper()

    assert ask(app, {"path": "/"})[0]["body"] == "from a coroutine"


def test_async_handler_that_needs_an_event_loop_is_a_500(capsys):
    import asyncio

    class Timer:                    # what an event loop's future looks like to a coroutine
        def __await__(self):
            yield self

    async def app(req):
        await asyncio.sleep(0)      # only passes control: fine
        await Timer()
        return "never"

    assert ask(app, {"path": "/"})[0]["status"] == 500
    assert "needs an event loop" in capsys.readouterr().err


def test_wsgi_app():
    def app(environ, start_response):
        body = environ["wsgi.input"].read()
        start_response("202 Accepted", [("Content-Type", "text/plain"), ("X-Path", environ["PATH_INFO"])])
        return [b"got ", body, environ["QUERY_STRING"].encode(), environ.get("HTTP_X_A", "").encode()]

    r = ask(app, {"method": "POST", "path": "/w?q=1", "body": "hi", "headers": [["x-a", "!"]]}, kind="wsgi")[0]
    assert r["status"] == 202 and r["body"] == "got hiq=1!" and ["X-Path", "/w"] in r["headers"]


def test_asgi_is_refused():
    async def app(scope, receive, send):
        pass

    with pytest.raises(SystemExit, match="ASGI"):
        _wasi.main(app)


def test_preinit_registers_without_serving(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["app", "--forge-preinit"])
    monkeypatch.setattr(_wasi, "_app", None)
    monkeypatch.setattr(_wasi, "_kind", None)
    _wasi.main(hello.app)           # would block on stdin if it served
    assert sys.argv == ["app"] and _wasi._app is hello.app


def test_serve_registered_refreshes_environment_and_random(monkeypatch):
    import os
    import random

    monkeypatch.setattr(_wasi, "_app", lambda req: os.environ.get("GREETING", "-"))
    monkeypatch.setattr(_wasi, "_kind", "handler")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b'{"path": "/"}\n')))
    out = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(out))
    saved = dict(os.environ)
    random.seed(1)
    a = random.random()
    try:
        _wasi.serve_registered([b"GREETING=hej", b"PATH=/bin"])
        assert dict(os.environ) == {"GREETING": "hej", "PATH": "/bin"}
        random.seed(1)
    finally:
        os.environ._data.clear()
        os.environ.update(saved)
    assert json.loads(out.getvalue())["body"] == "hej"
    assert random.random() == a


# -- what cannot work on wasm32-wasi ------------------------------------------------------------------


def _check(tmp_path, code):
    f = tmp_path / "app.py"
    f.write_text(textwrap.dedent(code))
    return [(p.line, p.what) for p in check([f])]


def test_unsupported_imports_and_thread_starts(tmp_path):
    found = _check(tmp_path, """\
        import json, threading
        import socket
        from subprocess import run
        import http.client as hc
        from concurrent import futures
        import os
        lock = threading.Lock()            # fine: one thread, locks work
        try:
            import zlib                    # fine: optional
        except ImportError:
            zlib = None
        def app(req):
            threading.Thread(target=print).start()
            futures.ThreadPoolExecutor()
            os.fork()
            return "x"
        """)
    assert found == [(2, "import socket"), (3, "import subprocess"), (4, "import http.client"),
                     (13, "threading.Thread"), (14, "futures.ThreadPoolExecutor"), (15, "os.fork")]


def test_clean_workload_passes(tmp_path):
    assert _check(tmp_path, "import json, time, threading, hashlib, asyncio\nimport urllib.parse\n") == []
    assert check([ROOT / "examples" / "hello" / "app.py"]) == []


# -- the patch applier --------------------------------------------------------------------------------


PATCH = """\
--- a/pkg/f.c
+++ b/pkg/f.c
@@ -2,3 +2,4 @@
 two
-three
+THREE
+three and a half
 four
"""


def test_patch_applies_with_offset(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "f.c").write_text("zero\none\ntwo\nthree\nfour\nfive\n")
    assert apply(PATCH, tmp_path) == ["pkg/f.c"]
    assert (tmp_path / "pkg" / "f.c").read_text() == "zero\none\ntwo\nTHREE\nthree and a half\nfour\nfive\n"


def test_patch_refuses_changed_source_and_touches_nothing(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "f.c").write_text("one\ntwo\n3\nfour\n")
    with pytest.raises(PatchFailed, match="does not match"):
        apply(PATCH, tmp_path)
    assert (tmp_path / "pkg" / "f.c").read_text() == "one\ntwo\n3\nfour\n"
    with pytest.raises(PatchFailed, match="no such file"):
        apply(PATCH.replace("pkg/f.c", "pkg/g.c"), tmp_path)


def test_shipped_patches_parse():
    from forge.wasm.patch import parse

    sig = parse((ROOT / "forge/wasm/patches/nuitka-wasm-signatures.patch").read_text())
    assert len(sig) == 9 and all(p.startswith("nuitka/build/static_src/") for p, _ in sig)
    text = (ROOT / "forge/wasm/patches/nuitka-wasm-signatures.patch").read_text()
    assert text.count("__forge_wasm(") == 81     # one exact-signature wrapper per mismatched entry
