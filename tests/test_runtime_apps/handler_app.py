"""Plain-handler workload used by tests/test_runtime_server.py (sync; served by the lean loop by
default, by asyncio under FORGE_LOOP=asyncio)."""

import json
import os
import sys
import time

from forge_runtime import Response


def _wait_for_file(path, limit=30.0):
    end = time.monotonic() + limit
    while not os.path.exists(path):
        if time.monotonic() > end:
            raise TimeoutError(path)
        time.sleep(0.01)


def app(request):
    path = request.path
    q = request.query
    if path == "/":
        return "hello from forge"
    if path == "/json":
        return {"ok": True}
    if path == "/echo":
        return Response.json(
            {
                "method": request.method,
                "path": request.path,
                "raw_path": request.raw_path.decode("latin-1"),
                "query": request.query,
                "query_string": request.query_string.decode("latin-1"),
                "headers": request.headers.items(),
                "body_len": len(request.body),
                "body": request.body.decode("latin-1"),
                "client": list(request.client) if request.client else None,
            }
        )
    if path == "/bytes":
        return b"\x00\x01binary"
    if path == "/none":
        return None
    if path == "/stream":
        n = int(q.get("n", "5"))
        return Response.stream((f"chunk {i}\n" for i in range(n)), content_type="text/plain")
    if path == "/sse":
        # First event, then block until the test creates the release file: the client must see the
        # first event while the generator is still blocked, which proves the body is streamed.
        release = q["release"]

        def events():
            yield {"event": "first", "data": "1"}
            _wait_for_file(release)
            yield {"event": "second", "data": "2"}

        return Response.sse(events())
    if path == "/import-logging":
        import logging  # imports threading on this worker thread, as a lazy import in a handler does

        return logging.__name__
    if path == "/astream":
        # An async iterator body from a sync handler: driven on the worker thread.
        async def gen():
            for i in range(3):
                yield f"async {i}\n"

        return Response.stream(gen(), content_type="text/plain")
    if path == "/block":
        if q.get("import_threading"):
            import threading  # noqa: F401  (first imported here, on a worker thread)
        # Announce that the request is in the handler, then wait for the test's go-ahead file.
        with open(q["started"], "w") as f:
            f.write("started")
        _wait_for_file(q["release"], float(q.get("limit", "30")))
        return "released"
    if path == "/sleep":
        time.sleep(float(q.get("s", "0.2")))
        return "slept"
    if path == "/error":
        raise RuntimeError("boom")
    if path == "/bad-return":
        return 42
    if path == "/stream-error":

        def gen():
            yield b"partial"
            raise RuntimeError("mid-stream")

        return Response.stream(gen())
    if path == "/modules":
        # "compiled": Nuitka sets __compiled__ in the modules it compiles.
        return Response.json({"modules": sorted(sys.modules), "compiled": "__compiled__" in globals()})
    if path == "/headers":
        return Response("x", headers=[("x-one", "1"), ("x-two", "2"), ("x-two", "3")])
    if path == "/evil-header":
        return Response("x", headers={"x-evil": "a\r\nset-cookie: b"})
    if path == "/status":
        return Response(b"", status=int(q.get("code", "200")))
    if path == "/big":
        return b"x" * int(q.get("n", "1000000"))
    if path == "/env":
        return {k: v for k, v in os.environ.items() if k.startswith("FORGE_")}
    return Response.text("not found\n", status=404)


def json_default(_):  # pragma: no cover - keeps json imported like a real workload
    return json.dumps({})
