"""forge_runtime on wasm32-wasi: no sockets, no threads. Requests come in on stdin, responses go
out on stdout, one JSON object per line (JSON lines), in order. One line is one request; a stream
of lines is served by one instance, one after the other. EOF ends the instance (exit status 0).

Request line (UTF-8 JSON object):
    {"id": 7,                                  optional, any JSON value, echoed in the response
     "method": "POST",                         default "GET"
     "path": "/echo?x=1",                      path and query as sent (percent-encoded); default "/"
     "headers": [["content-type", "application/json"]],   or {"name": "value"}; optional
     "body": "{\\"a\\": 1}"}                   UTF-8 text; or "body_base64": "..." for bytes
Response line:
    {"id": 7, "status": 200, "headers": [["content-type", "application/json"]],
     "body": "..."}                            or "body_base64" when the body is not valid UTF-8

The workload's `app` is the same as on the native target: a plain handler `app(request)`
(sync or `async def` that awaits nothing but other coroutines), or a WSGI app. A handler that
raises gets status 500 ("Internal Server Error") and the traceback goes to stderr as one JSON line
{"event": "error", "where": "handler GET /x", "traceback": "..."}. A line that is not a valid
request gets status 400 with the reason in the body. Streamed bodies are collected in full.

forge's wasm target compiles `main(app)` as the program. With pre-initialisation (wizer) the
module is run once at build time with `--forge-preinit`: the workload is imported and `main`
returns without reading stdin; the snapshot's `_start` then runs `serve_registered()`, and its
`forge-handle` export runs `handle_one()`: one request per call, for hosts that keep the instance.
"""

import sys

from ._types import Request, Response, to_response

_app = None
_kind = None
_ERROR_BODY = "Internal Server Error\n"


def _log(event, **fields):
    import json

    try:
        sys.stderr.write(json.dumps({"event": event, **fields}, default=str) + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def _report(where):
    import traceback

    _log("error", where=where, traceback=traceback.format_exc())


class BadRequest(ValueError):
    pass


def _str(obj, what):
    if not isinstance(obj, str):
        raise BadRequest(f"{what} must be a string, not {type(obj).__name__}")
    return obj


def parse_request(obj):
    """A decoded JSON request object -> (Request, id)."""
    if not isinstance(obj, dict):
        raise BadRequest(f"a request must be a JSON object, not {type(obj).__name__}")
    method = _str(obj.get("method", "GET"), "method").upper()
    target = _str(obj.get("path", "/"), "path") or "/"
    raw_target = target.encode("utf-8")
    raw_path, _, query = raw_target.partition(b"?")
    from ._http import unquote_bytes

    path = unquote_bytes(raw_path).decode("utf-8", "replace")
    headers = obj.get("headers") or []
    if isinstance(headers, dict):
        headers = list(headers.items())
    if not isinstance(headers, list):
        raise BadRequest("headers must be a list of [name, value] pairs or an object")
    raw_headers = []
    for pair in headers:
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
            raise BadRequest(f"each header must be a [name, value] pair, not {pair!r}")
        name, value = _str(pair[0], "a header name"), _str(pair[1], "a header value")
        try:
            raw_headers.append((name.lower().encode("latin-1"), value.encode("latin-1")))
        except UnicodeEncodeError:
            raise BadRequest(f"header {name!r} is not latin-1") from None
    if "body_base64" in obj:
        import binascii

        try:
            body = binascii.a2b_base64(_str(obj["body_base64"], "body_base64").encode("ascii"), strict_mode=True)
        except (binascii.Error, UnicodeEncodeError) as exc:
            raise BadRequest(f"body_base64 is not valid base64: {exc}") from None
    else:
        body = _str(obj.get("body", ""), "body").encode("utf-8")
    req = Request(method, path, raw_path, query, raw_headers, body)
    for name, value in raw_headers:
        if name == b"host":
            req.host = value
    return req, obj.get("id")


def _body_bytes(body):
    if body is None:
        return b""
    if isinstance(body, str):
        return body.encode("utf-8")
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body)
    if hasattr(body, "__aiter__"):
        async def collect():
            return [chunk async for chunk in body]

        chunks = run_coroutine(collect())
    else:
        chunks = list(body)
    out = []
    for c in chunks:
        if isinstance(c, str):
            c = c.encode("utf-8")
        elif not isinstance(c, (bytes, bytearray, memoryview)):
            raise TypeError(f"stream chunks must be bytes or str, not {type(c).__name__}")
        out.append(bytes(c))
    return b"".join(out)


def _header_list(headers):
    items = headers.items() if isinstance(headers, dict) else headers
    out = []
    for name, value in items:
        if isinstance(name, bytes):
            name = name.decode("latin-1")
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        elif isinstance(value, int):
            value = str(value)
        out.append([name, value])
    return out


def run_coroutine(coro):
    """Run a coroutine that awaits nothing but other coroutines (there is no event loop here)."""
    while True:
        try:
            yielded = coro.send(None)
        except StopIteration as stop:
            return stop.value
        if yielded is not None:     # a bare yield (asyncio.sleep(0)) only passes control: go on
            break
    coro.close()
    raise RuntimeError(
        f"the handler awaited {yielded!r}, which needs an event loop; on wasm32-wasi there is none "
        "(no sockets, no timers): await only plain coroutines")


def _wsgi(app, req):
    import io

    env = {
        "REQUEST_METHOD": req.method, "SCRIPT_NAME": "", "PATH_INFO": req.path,
        "QUERY_STRING": req.query_string.decode("latin-1"), "SERVER_NAME": "localhost",
        "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(req.body), "wsgi.errors": sys.stderr,
        "wsgi.multithread": False, "wsgi.multiprocess": False, "wsgi.run_once": False,
    }
    for name, value in req.raw_headers:
        name, value = name.decode("latin-1"), value.decode("latin-1")
        if name == "content-type":
            env["CONTENT_TYPE"] = value
        elif name == "content-length":
            env["CONTENT_LENGTH"] = value
        elif "_" not in name:
            key = "HTTP_" + name.upper().replace("-", "_")
            env[key] = env[key] + "," + value if key in env else value
    if req.host:
        env["SERVER_NAME"] = req.host.decode("latin-1").partition(":")[0]
    if req.body and "CONTENT_LENGTH" not in env:
        env["CONTENT_LENGTH"] = str(len(req.body))
    state = {}
    written = []

    def start_response(status, headers, exc_info=None):
        if exc_info is not None and "sent" in state:
            raise exc_info[1].with_traceback(exc_info[2])
        state["status"], state["headers"] = status, headers
        return written.append

    result = app(env, start_response)
    try:
        body = b"".join([*written, *(c if isinstance(c, bytes) else c.encode("latin-1") for c in result)])
    finally:
        if hasattr(result, "close"):
            result.close()
    if "status" not in state:
        raise RuntimeError("WSGI app returned without calling start_response")
    return int(state["status"][:3]), _header_list(state["headers"]), body


def handle(app, req, kind="handler"):
    """One request -> (status, [[name, value], ...], body bytes). Exceptions propagate."""
    if kind == "wsgi":
        return _wsgi(app, req)
    result = app(req)
    if hasattr(result, "__await__"):
        result = run_coroutine(result.__await__() if not hasattr(result, "send") else result)
    resp = to_response(result)
    body = _body_bytes(resp.body)
    if req.method == "HEAD" or resp.status in (204, 304) or 100 <= resp.status < 200:
        body = b""
    return resp.status, _header_list(resp.headers), body


def respond_line(app, line, kind="handler"):
    """One request line (bytes) -> one response line (bytes, with the newline)."""
    import json

    rid = None
    try:
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise BadRequest(f"not a JSON object: {exc}") from None
        req, rid = parse_request(obj)
    except BadRequest as exc:
        status, headers, body = 400, [["content-type", "text/plain; charset=utf-8"]], f"bad request: {exc}\n".encode()
    else:
        try:
            status, headers, body = handle(app, req, kind)
        except Exception:
            _report(f"handler {req.method} {req.path}")
            status, headers, body = 500, [["content-type", "text/plain; charset=utf-8"]], _ERROR_BODY.encode()
    out = {"status": status, "headers": headers}
    if rid is not None:
        out = {"id": rid, **out}
    try:
        out["body"] = body.decode("utf-8")
    except UnicodeDecodeError:
        import binascii

        out["body_base64"] = binascii.b2a_base64(body, newline=False).decode("ascii")
    return (json.dumps(out, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def serve(app, stdin=None, stdout=None):
    """Answer every request line on stdin until EOF. Returns the number of requests served."""
    kind = _kind or _detect_kind(app)
    rin = stdin or sys.stdin.buffer
    wout = stdout or sys.stdout.buffer
    n = 0
    while True:
        line = rin.readline()
        if not line:
            break
        if not line.strip():
            continue
        wout.write(respond_line(app, line, kind))
        wout.flush()
        n += 1
    return n


def _detect_kind(app):
    from ._detect import detect

    kind = detect(app)
    if kind == "asgi":
        raise SystemExit("forge_runtime: ASGI apps need an event loop and sockets; on wasm32-wasi "
                         "use a plain handler app(request) or a WSGI app")
    return kind


def main(app):
    """The wasm program's body: serve stdin, or (pre-initialisation) only get ready."""
    global _app, _kind
    _kind = _detect_kind(app)
    _app = app
    if sys.argv[1:2] == ["--forge-preinit"]:
        del sys.argv[1:2]
        # Warm forge's own request path (imports, parsers) with a request that never reaches the
        # workload, so that the snapshot has it ready: a fresh instance's first request is cheap.
        respond_line(lambda req: Response(req.body, headers={"x": req.headers.get("a", "")}),
                     b'{"path": "/w%20?a=1", "headers": [["a", "b"]], "body": "x"}', "handler")
        return
    serve(app)


def _refresh(environ):
    """After the snapshot: this instance's environment, and fresh random state (the snapshot's
    would be the same in every instance)."""
    import os

    data = os.environ._data
    data.clear()
    for entry in environ:
        name, sep, value = entry.partition(b"=")
        if sep:
            data[name] = value
    random = sys.modules.get("random")
    if random is not None:
        random.seed()


def serve_registered(environ=()):
    """Entry of a pre-initialised module (called from C after the snapshot with the environment
    as a list of b"NAME=value")."""
    if _app is None:
        raise SystemExit("forge_runtime: no app registered (module not pre-initialised)")
    _refresh(environ)
    serve(_app)


def handle_one(environ=None):
    """Reactor entry of a pre-initialised module (forge-handle export): answer one request line
    from stdin. Returns 1, or 0 at EOF. `environ` (first call only) is the instance's environment."""
    if environ is not None:
        _refresh(environ)
    if _app is None:
        raise SystemExit("forge_runtime: no app registered (module not pre-initialised)")
    rin = sys.stdin.buffer
    while True:
        line = rin.readline()
        if not line:
            return 0
        if line.strip():
            break
    sys.stdout.buffer.write(respond_line(_app, line, _kind))
    sys.stdout.buffer.flush()
    return 1
