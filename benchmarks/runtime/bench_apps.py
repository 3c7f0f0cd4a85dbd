"""The same "hello" workload in every shape the benchmarks serve."""

BODY = b"hello from forge"


def handler(request):
    """forge plain handler."""
    return BODY


async def async_handler(request):
    return BODY


def wsgi(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))])
    return [BODY]


async def asgi(scope, receive, send):
    """A raw ASGI 3 app (with lifespan), served by forge_runtime and by uvicorn alike."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send({
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(BODY))],
    })
    await send({"type": "http.response.body", "body": BODY})
