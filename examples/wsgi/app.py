"""forge example: a Bottle (single-file, pure Python) WSGI app."""

import json
import time

import bottle

STARTED = time.time()
app = bottle.Bottle()


@app.get("/")
def index():
    bottle.response.content_type = "text/plain; charset=utf-8"
    return "hello from forge (bottle)"


@app.get("/healthz")
def healthz():
    return {"ok": True, "uptime_s": round(time.time() - STARTED, 3)}  # bottle serialises dicts as JSON


@app.post("/echo")
def echo():
    try:
        data = json.loads(bottle.request.body.read() or b"null")
    except ValueError as exc:
        bottle.response.status = 400
        return {"error": f"invalid JSON: {exc}"}
    return {"echo": data}


@app.get("/stream")
def stream():
    bottle.response.content_type = "text/plain; charset=utf-8"
    return (f"line {i}\n" for i in range(int(bottle.request.query.get("n", "3"))))
