"""The smallest forge workload: a plain handler.

GET /          -> "hello from forge"
GET /healthz   -> {"ok": true}
POST /echo     -> the JSON body back, with a little metadata

No `import json` here: request.json() and Response.json import it on first use, so the cold start
does not pay for json and the `re` and `enum` it pulls in (~4.5 ms of a ~14 ms start, docs/runtime.md).
"""

import time

from forge_runtime import Response

STARTED = time.time()


def app(request):
    if request.path == "/":
        return "hello from forge"
    if request.path == "/healthz":
        return {"ok": True, "uptime_s": round(time.time() - STARTED, 3)}
    if request.path == "/echo" and request.method == "POST":
        try:
            data = request.json() if request.body else None
        except ValueError as exc:
            return Response.json({"error": f"invalid JSON: {exc}"}, status=400)
        return Response.json({"echo": data, "bytes": len(request.body)})
    return Response.text("not found\n", status=404)
