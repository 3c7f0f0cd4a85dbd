"""A raw ASGI 3 app with a lifespan the tests can observe and hold.

FORGE_TEST_EVENTS: file to which lifespan events are appended.
FORGE_TEST_STARTUP_GATE: if set, startup waits until this file exists.
FORGE_TEST_STARTUP_FAIL: if set, startup reports lifespan.startup.failed.
"""

import asyncio
import json
import os


def _record(event):
    path = os.environ.get("FORGE_TEST_EVENTS")
    if path:
        with open(path, "a") as f:
            f.write(event + "\n")


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                _record("startup-begin")
                gate = os.environ.get("FORGE_TEST_STARTUP_GATE")
                if gate:
                    while not os.path.exists(gate):
                        await asyncio.sleep(0.01)
                if os.environ.get("FORGE_TEST_STARTUP_FAIL"):
                    await send({"type": "lifespan.startup.failed", "message": "no database"})
                    return
                scope["state"]["greeting"] = "hello from lifespan"
                _record("startup-complete")
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                _record("shutdown")
                await send({"type": "lifespan.shutdown.complete"})
                return
    assert scope["type"] == "http"
    path = scope["path"]
    if path == "/state":
        body = json.dumps({"greeting": scope["state"].get("greeting")}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})
        return
    if path == "/scope":
        message = await receive()
        info = {
            "type": scope["type"],
            "asgi": scope["asgi"],
            "http_version": scope["http_version"],
            "method": scope["method"],
            "scheme": scope["scheme"],
            "path": scope["path"],
            "raw_path": scope["raw_path"].decode("latin-1"),
            "query_string": scope["query_string"].decode("latin-1"),
            "root_path": scope["root_path"],
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
            "client": list(scope["client"]) if scope["client"] else None,
            "server": list(scope["server"]),
            "body": message["body"].decode("latin-1"),
            "more_body": message["more_body"],
        }
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": json.dumps(info).encode()})
        return
    if path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        for i in range(3):
            await send({"type": "http.response.body", "body": f"part {i}\n".encode(), "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    if path == "/error":
        raise RuntimeError("asgi boom")
    if path == "/sleep":  # the request watchdog's tests: ?s= seconds, ?thread=1 on a worker thread
        q = dict(p.split("=", 1) for p in scope["query_string"].decode().split("&") if "=" in p)
        if q.get("thread"):
            import time

            await asyncio.to_thread(time.sleep, float(q.get("s", "0.2")))
        else:
            await asyncio.sleep(float(q.get("s", "0.2")))
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"slept"})
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"hello from asgi"})

