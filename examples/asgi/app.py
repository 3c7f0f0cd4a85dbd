"""forge example: a Starlette (pure Python) ASGI app with lifespan and server-sent events."""

import asyncio
import contextlib
import json
import time

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route


@contextlib.asynccontextmanager
async def lifespan(app):
    # Runs before the first request is served (the ping probe is answered meanwhile).
    yield {"started_at": time.time()}


async def index(request: Request):
    return PlainTextResponse("hello from forge (starlette)")


async def healthz(request: Request):
    return JSONResponse({"ok": True, "uptime_s": round(time.time() - request.state.started_at, 3)})


async def echo(request: Request):
    try:
        data = await request.json()
    except ValueError as exc:
        return JSONResponse({"error": f"invalid JSON: {exc}"}, status_code=400)
    return JSONResponse({"echo": data})


async def events(request: Request):
    count = min(int(request.query_params.get("n", "3")), 100)

    async def gen():
        for i in range(count):
            yield f"id: {i}\ndata: {json.dumps({'tick': i})}\n\n"
            await asyncio.sleep(0.01)

    return StreamingResponse(gen(), media_type="text/event-stream")


app = Starlette(
    routes=[
        Route("/", index),
        Route("/healthz", healthz),
        Route("/echo", echo, methods=["POST"]),
        Route("/events", events),
    ],
    lifespan=lifespan,
)
