"""An async plain handler (served on asyncio)."""

import asyncio

from forge_runtime import Response


async def app(request):
    if request.path == "/":
        await asyncio.sleep(0)
        return "hello from async forge"
    if request.path == "/echo":
        return {"method": request.method, "body": request.text}
    if request.path == "/astream":

        async def gen():
            for i in range(int(request.query.get("n", "3"))):
                await asyncio.sleep(0)
                yield f"a{i}\n"

        return Response.stream(gen(), content_type="text/plain")
    if request.path == "/sstream":
        return Response.stream(iter([b"s0\n", b"s1\n"]), content_type="text/plain")
    if request.path == "/sstream-fail":  # a sync body that raises after its first chunk

        def failing():
            yield b"s0\n"
            raise RuntimeError("sync stream boom")

        return Response.stream(failing(), content_type="text/plain")
    if request.path == "/sleep":
        await asyncio.sleep(float(request.query.get("s", "0.2")))
        return "slept"
    if request.path == "/error":
        raise ValueError("async boom")
    return Response.text("not found\n", status=404)
