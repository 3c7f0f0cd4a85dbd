"""forge_runtime.cloudflare: the workload's Cloudflare bindings and Workflow steps.

    from forge_runtime import cloudflare
    cloudflare.kv("SESSIONS").put("s1", b"...", ttl=3600)
    cloudflare.r2("ARTIFACTS").put("report.pdf", open("report.pdf", "rb"))
    rows = cloudflare.d1("DB").query("SELECT * FROM docs WHERE id = ?", [7])
    cloudflare.queue("EVENTS").send({"event": "stored", "id": 7})
    cloudflare.ai().run("@cf/baai/bge-small-en-v1.5", {"text": ["hello"]})
    await cloudflare.aio.kv("SESSIONS").get("s1")          # the same calls, awaitable

Each binding declared in [tool.forge.cloudflare] answers on a virtual host inside the container
(SESSIONS, kind kv -> http://sessions.kv.forge.internal/), served by the Worker's outboundByHost
handlers that `forge deploy cloudflare` writes; the protocol is in forge's docs/deploy.md. Nothing
here needs credentials or an SDK: plain HTTP over http.client.

Outside Cloudflare set FORGE_CLOUDFLARE_URL (e.g. http://127.0.0.1:8787, what `npm run bindings`
in the deploy project serves: the same handlers under Miniflare with local storage); requests then
go there with the virtual host in the Host header. FORGE_CLOUDFLARE_TIMEOUT (seconds, default 30)
bounds each call.

Workflow steps: `@forge_runtime.step("extract", retries=3, backoff="exponential", timeout="5 minutes")`
registers `def extract(params, outputs)`, run when the Workflow asks (POST /_forge/steps/extract).

This module is imported only when used (forge_runtime.cloudflare is a lazy attribute).
"""

import http.client
import json
import os
import socket

__all__ = ["kv", "r2", "d1", "queue", "ai", "aio", "step", "sleep", "wait_for_event", "StepFailed",
           "CloudflareError", "BindingUnavailable", "BindingTimeout", "BindingRejected", "BindingFailed",
           "NotFound", "QueryError"]

DOMAIN = "forge.internal"
STEP_PREFIX = "/_forge/steps/"


# --- errors ---------------------------------------------------------------------------------------------------
class CloudflareError(Exception):
    """A binding call failed. `binding`, `kind`, `status` (HTTP, 0 if none), `code` and `message`
    (the binding's own words) say how."""

    def __init__(self, binding, kind, message, status=0, code=""):
        super().__init__(f"{kind} binding {binding}: {message}")
        self.binding, self.kind, self.message, self.status, self.code = binding, kind, message, status, code


class BindingUnavailable(CloudflareError):
    """The binding's host could not be reached (no Worker handler, no local emulation running)."""


class BindingTimeout(CloudflareError):
    """No answer within the timeout."""


class BindingRejected(CloudflareError):
    """The binding refused the request (HTTP 4xx): a bad key, TTL, SQL, message..."""


class NotFound(BindingRejected):
    """HTTP 404: no such key or object (get/head return None instead), or no such route."""


class QueryError(BindingRejected):
    """D1 could not run the SQL; `message` is D1's."""


class BindingFailed(CloudflareError):
    """The binding failed on Cloudflare's side (HTTP 5xx)."""


def virtual_host(kind, name):
    """SESSIONS (kv) -> sessions.kv.forge.internal (forge deploy cloudflare uses the same rule)."""
    return f"{name.lower().replace('_', '-')}.{kind}.{DOMAIN}"


def _timeout(value):
    if value is not None:
        return float(value)
    try:
        return float(os.environ.get("FORGE_CLOUDFLARE_TIMEOUT") or 30)
    except ValueError:
        return 30.0


def _quote(key):
    from urllib.parse import quote

    if not isinstance(key, str) or key == "":
        raise ValueError("a key is a non-empty string")
    return quote(key, safe="")


def _query(**params):
    from urllib.parse import urlencode

    items = {k: v for k, v in params.items() if v is not None}
    return "?" + urlencode(items) if items else ""


class Binding:
    kind = ""

    def __init__(self, name, timeout=None):
        if not isinstance(name, str) or not name:
            raise ValueError("a binding is named as in [tool.forge.cloudflare] bindings, e.g. \"SESSIONS\"")
        self.name = name
        self.host = virtual_host(self.kind, name)
        self.timeout = _timeout(timeout)

    def __repr__(self):
        return f"<{type(self).__name__} {self.name} at {self.host}>"

    # One HTTP exchange. stream=True returns the open response (the caller closes it).
    def _call(self, method, path, body=None, headers=None, stream=False, ok_404=False):
        base = os.environ.get("FORGE_CLOUDFLARE_URL")
        if base:
            from urllib.parse import urlsplit

            u = urlsplit(base)
            target, port = u.hostname or "127.0.0.1", u.port or (443 if u.scheme == "https" else 80)
            cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
        else:
            target, port, cls = self.host, 80, http.client.HTTPConnection
        hdrs = {"Host": self.host, "X-Forge-Host": self.host, "User-Agent": "forge_runtime.cloudflare"}
        if headers:
            hdrs.update(headers)
        conn = cls(target, port, timeout=self.timeout)
        try:
            if body is not None and not isinstance(body, (bytes, bytearray, memoryview, str)) and \
                    "Content-Length" not in hdrs:
                length = _length_of(body)
                if length is not None:
                    hdrs["Content-Length"] = str(length)
                elif not hasattr(body, "read"):
                    body = _chunks(body)
            conn.request(method, path, body=body, headers=hdrs,
                         encode_chunked="Content-Length" not in hdrs and body is not None
                         and not isinstance(body, (bytes, bytearray, memoryview, str)))
            resp = conn.getresponse()
        except (socket.timeout, TimeoutError):
            conn.close()
            raise BindingTimeout(self.name, self.kind, f"no answer within {self.timeout:g} s "
                                 "(FORGE_CLOUDFLARE_TIMEOUT)") from None
        except OSError as exc:
            conn.close()
            where = f"{target}:{port}" if base else f"http://{self.host}/"
            hint = ("" if base else "; outside Cloudflare, run the local emulation (`npm run bindings` in the "
                    "project `forge deploy cloudflare` wrote) and set FORGE_CLOUDFLARE_URL=http://127.0.0.1:8787")
            raise BindingUnavailable(self.name, self.kind, f"cannot reach {where}: {exc}{hint}") from None
        if resp.status == 404 and ok_404:
            data = resp.read()
            conn.close()
            err = self._error(404, data)
            if not data or err.code == "not_found":      # no such key / object (HEAD has no body)
                return None
            raise err
        if resp.status >= 400:
            try:
                data = resp.read()
            except (OSError, http.client.HTTPException):
                data = b""
            conn.close()
            raise self._error(resp.status, data)
        if stream:
            return _Stream(conn, resp)
        try:
            data = resp.read()
        except (socket.timeout, TimeoutError):
            raise BindingTimeout(self.name, self.kind, f"the answer did not arrive within {self.timeout:g} s") \
                from None
        finally:
            conn.close()
        return resp, data

    def _json(self, method, path, doc):
        resp, data = self._call(method, path, json.dumps(doc).encode(), {"Content-Type": "application/json"})
        return json.loads(data) if data else None

    def _error(self, status, data):
        code, message = "", data.decode("utf-8", "replace").strip() or f"HTTP {status}"
        try:
            err = json.loads(data)["error"]
            code, message = err.get("code", ""), err.get("message", message)
        except (ValueError, KeyError, TypeError, AttributeError):
            pass
        if status == 520:
            message += " (the container's egress settings blocked this host)"
        cls = (NotFound if status == 404 else QueryError if code == "query_failed" else
               BindingRejected if status < 500 else BindingTimeout if status == 504 else BindingFailed)
        return cls(self.name, self.kind, message, status, code)


def _length_of(body):
    if hasattr(body, "fileno"):
        try:
            st = os.fstat(body.fileno())
            import stat

            if stat.S_ISREG(st.st_mode):
                return st.st_size - body.tell()
        except (OSError, ValueError, AttributeError):
            pass
    if hasattr(body, "getbuffer"):          # io.BytesIO
        return len(body.getbuffer()) - body.tell()
    return None


def _chunks(it):
    for chunk in it:
        yield chunk.encode() if isinstance(chunk, str) else bytes(chunk)


class _Stream:
    """An open response body: read(), iteration in chunks, close(); a context manager."""

    def __init__(self, conn, resp):
        self._conn, self._resp = conn, resp
        self.headers = resp.headers

    def read(self, n=-1):
        return self._resp.read() if n is None or n < 0 else self._resp.read(n)

    def __iter__(self, chunk=64 * 1024):
        try:
            while True:
                data = self._resp.read(chunk)
                if not data:
                    return
                yield data
        finally:
            self.close()

    def close(self):
        self._resp.close()
        self._conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --- KV -------------------------------------------------------------------------------------------------------
class KV(Binding):
    """A KV namespace: get/put/delete/list; values are bytes (str is stored as UTF-8)."""

    kind = "kv"

    def get(self, key, default=None):
        got = self._call("GET", "/keys/" + _quote(key), ok_404=True)
        return default if got is None else got[1]

    def get_text(self, key, default=None):
        value = self.get(key)
        return default if value is None else value.decode("utf-8")

    def get_json(self, key, default=None):
        value = self.get(key)
        return default if value is None else json.loads(value)

    def put(self, key, value, ttl=None):
        """Store value (bytes, str, or a dict/list stored as JSON); ttl in seconds (KV's minimum is 60)."""
        if isinstance(value, (dict, list)):
            value = json.dumps(value)
        if isinstance(value, str):
            value = value.encode()
        if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int) or ttl < 60):
            raise ValueError(f"ttl={ttl!r}: whole seconds, at least 60 (KV's minimum)")
        self._call("PUT", "/keys/" + _quote(key) + _query(ttl=ttl), bytes(value),
                   {"Content-Type": "application/octet-stream"})

    def delete(self, key):
        self._call("DELETE", "/keys/" + _quote(key))

    def list(self, prefix=None, limit=None, cursor=None):
        """-> {"keys": [{"name", "expiration"}], "cursor": str | None, "complete": bool}"""
        _, data = self._call("GET", "/keys" + _query(prefix=prefix, limit=limit, cursor=cursor))
        return json.loads(data)


# --- R2 -------------------------------------------------------------------------------------------------------
class R2Object:
    """An R2 object's metadata and (from get) its body, streamed: read(), iterate, close(), with."""

    def __init__(self, key, headers, stream=None):
        self.key = key
        self.size = int(headers.get("content-length") or 0)
        self.etag = (headers.get("etag") or "").strip('"')
        self.content_type = headers.get("content-type")
        self.last_modified = headers.get("last-modified")
        self.metadata = {k[len("x-forge-meta-"):]: v for k, v in headers.items()
                         if k.lower().startswith("x-forge-meta-")}
        self._stream = stream

    def read(self, n=-1):
        if self._stream is None:
            raise ValueError("head() returns metadata only; use get() for the body")
        return self._stream.read(n)

    def text(self):
        return self.read().decode("utf-8")

    def json(self):
        return json.loads(self.read())

    def __iter__(self):
        return iter(self._stream) if self._stream is not None else iter(())

    def close(self):
        if self._stream is not None:
            self._stream.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"<R2Object {self.key!r} {self.size} bytes>"


class R2(Binding):
    """An R2 bucket: get (streamed), put (bytes, str, a file or an iterable of chunks, streamed), head,
    delete, list."""

    kind = "r2"

    def get(self, key):
        stream = self._call("GET", "/objects/" + _quote(key), stream=True, ok_404=True)
        return None if stream is None else R2Object(key, stream.headers, stream)

    def head(self, key):
        got = self._call("HEAD", "/objects/" + _quote(key), ok_404=True)
        return None if got is None else R2Object(key, got[0].headers)

    def put(self, key, body, content_type=None, metadata=None):
        """-> {"key", "size", "etag"}"""
        if isinstance(body, str):
            body = body.encode()
        headers = {"Content-Type": content_type or "application/octet-stream"}
        for k, v in (metadata or {}).items():
            headers[f"X-Forge-Meta-{k}"] = str(v)
        _, data = self._call("PUT", "/objects/" + _quote(key), body, headers)
        return json.loads(data)

    def delete(self, key):
        self._call("DELETE", "/objects/" + _quote(key))

    def list(self, prefix=None, delimiter=None, limit=None, cursor=None):
        """-> {"objects": [{"key", "size", "etag", "uploaded"}], "prefixes", "cursor", "complete"}"""
        _, data = self._call("GET", "/objects" + _query(prefix=prefix, delimiter=delimiter, limit=limit,
                                                         cursor=cursor))
        return json.loads(data)


# --- D1, Queues, AI -----------------------------------------------------------------------------------------------
class D1(Binding):
    kind = "d1"

    def execute(self, sql, params=()):
        """-> {"results": [row dicts], "meta": {...}} (D1's meta: changes, last_row_id, duration...)"""
        return self._json("POST", "/query", {"sql": sql, "params": list(params)})

    def query(self, sql, params=()):
        """The rows, as a list of dicts."""
        return self.execute(sql, params)["results"]

    def batch(self, statements):
        """[(sql, params), ...] in one transaction -> one {"results", "meta"} per statement."""
        docs = [{"sql": s, "params": list(p)} for s, p in statements]
        return self._json("POST", "/batch", {"statements": docs})["results"]


class Queue(Binding):
    kind = "queue"

    def send(self, body, delay=None):
        """Send one JSON-serialisable message; delay in seconds."""
        self._json("POST", "/send", _message(body, delay))

    def send_batch(self, bodies, delay=None):
        self._json("POST", "/send-batch", {"messages": [_message(b, delay) for b in bodies]})


def _message(body, delay):
    doc = {"body": body}
    if delay is not None:
        doc["delaySeconds"] = delay
    return doc


class AI(Binding):
    kind = "ai"

    def run(self, model, inputs, **options):
        """Run a Workers AI model; -> its result (JSON)."""
        doc = {"model": model, "inputs": inputs}
        if options:
            doc["options"] = options
        return self._json("POST", "/run", doc)["result"]


def kv(name, timeout=None):
    return KV(name, timeout)


def r2(name, timeout=None):
    return R2(name, timeout)


def d1(name, timeout=None):
    return D1(name, timeout)


def queue(name, timeout=None):
    return Queue(name, timeout)


def ai(name="AI", timeout=None):
    return AI(name, timeout)


# --- async ----------------------------------------------------------------------------------------------------
class _Async:
    """The same binding, every method awaitable (run on a worker thread: the loop never blocks)."""

    def __init__(self, target):
        self._target = target

    def __getattr__(self, attr):
        value = getattr(self._target, attr)
        if not callable(value):
            return value

        async def call(*args, **kwargs):
            import asyncio

            result = await asyncio.to_thread(value, *args, **kwargs)
            return _Async(result) if isinstance(result, R2Object) else result

        return call

    def __aiter__(self):
        import asyncio

        it = iter(self._target)

        async def gen():
            while True:
                chunk = await asyncio.to_thread(next, it, None)
                if chunk is None:
                    return
                yield chunk

        return gen()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        self._target.close()

    def __repr__(self):
        return f"<async {self._target!r}>"


class _AioNamespace:
    """cloudflare.aio.kv("SESSIONS") ... : the async versions."""

    def kv(self, name, timeout=None):
        return _Async(KV(name, timeout))

    def r2(self, name, timeout=None):
        return _Async(R2(name, timeout))

    def d1(self, name, timeout=None):
        return _Async(D1(name, timeout))

    def queue(self, name, timeout=None):
        return _Async(Queue(name, timeout))

    def ai(self, name="AI", timeout=None):
        return _Async(AI(name, timeout))


aio = _AioNamespace()


# --- Workflow steps --------------------------------------------------------------------------------------------
STEPS = {}


class StepFailed(Exception):
    """Raise in a step to fail it; retry=False makes the failure permanent (no more retries; the
    Workflow instance errors with this message)."""

    def __init__(self, message, retry=False):
        super().__init__(message)
        self.retry = retry


def step(name, retries=0, backoff="exponential", delay=10, timeout="10 minutes", workflow="pipeline"):
    """Declare a Workflow step run in the container: `fn(params, outputs)` gets the instance's params
    and the outputs of the earlier steps ({step name: JSON}) and returns JSON. `forge deploy
    cloudflare` reads these arguments from the source (keep them literals) and writes one step.do per
    step, in source order."""
    def register(fn):
        STEPS[name] = fn
        fn.__forge_step__ = {"name": name, "retries": retries, "backoff": backoff, "delay": delay,
                             "timeout": timeout, "workflow": workflow}
        return fn

    return register


def sleep(duration, output=None):
    """Return this from a step to sleep (step.sleep) before the next one: sleep("1 hour"). `output`
    becomes the step's output."""
    return {"$forge": {"sleep": duration, "output": output}}


def wait_for_event(event_type, timeout="24 hours"):
    """Return this from a step to wait for an event (step.waitForEvent), sent with
    POST /_forge/workflows/NAME/ID/events/TYPE; its payload becomes the step's output."""
    return {"$forge": {"wait": event_type, "timeout": timeout}}


def run_step(name, body):
    """Run the step `name` for a request body ({"params", "outputs"}) -> (status, JSON bytes)."""
    fn = STEPS.get(name)
    if fn is None:
        return 404, _step_error(f"no step {name!r} (known: {', '.join(STEPS) or 'none'})", retry=False)
    try:
        doc = json.loads(body or b"{}")
        params, outputs = doc.get("params"), doc.get("outputs") or {}
    except (ValueError, AttributeError):
        return 400, _step_error("the step request is not {\"params\", \"outputs\"} JSON", retry=False)
    try:
        result = fn(params, outputs)
        if hasattr(result, "__await__"):
            import asyncio

            async def wait():
                return await result

            result = asyncio.run(wait())
        return 200, json.dumps(result).encode()
    except StepFailed as exc:
        return 422 if not exc.retry else 500, _step_error(str(exc), retry=exc.retry)
    except Exception as exc:  # a failed attempt: the Workflow retries it as configured
        return 500, _step_error(f"{type(exc).__name__}: {exc}", retry=True)


def run_step_bounded(name, body, timeout):
    """run_step on its own thread, answered within `timeout` seconds (the step's declared timeout, sent
    by the Workflow as X-Forge-Step-Timeout): past it the request gets 504 (an attempt the Workflow
    retries) and the server's worker is free again; the runaway step is abandoned."""
    try:
        timeout = float(timeout) if timeout else 0.0
    except ValueError:
        timeout = 0.0
    if timeout <= 0:
        return run_step(name, body)
    import _thread

    done = _thread.allocate_lock()
    done.acquire()
    box = []

    def work():
        try:
            box.append(run_step(name, body))
        finally:
            done.release()

    _thread.start_new_thread(work, ())
    if done.acquire(timeout=timeout):
        return box[0]
    return 504, _step_error(f"step {name!r} ran past its timeout ({timeout:g} s)", retry=True)


def _step_error(message, retry):
    return json.dumps({"error": {"message": message, "retry": retry}}).encode()


def with_steps(app):
    """`app`, answering POST /_forge/steps/NAME itself (forge_runtime.run wraps the app with this
    when steps are declared). The kind of app is kept."""
    from ._detect import detect, is_coroutine_callable
    from ._types import Response

    kind = detect(app)
    n = len(STEP_PREFIX)

    if kind == "handler" and not is_coroutine_callable(app):
        def wrapped(request):
            if request.path.startswith(STEP_PREFIX) and request.method == "POST":
                status, data = run_step_bounded(request.path[n:], request.body,
                                                request.headers.get("x-forge-step-timeout"))
                return Response(data, status, content_type="application/json")
            return app(request)
    elif kind == "handler":
        async def wrapped(request):
            if request.path.startswith(STEP_PREFIX) and request.method == "POST":
                import asyncio

                status, data = await asyncio.to_thread(run_step_bounded, request.path[n:], request.body,
                                                       request.headers.get("x-forge-step-timeout"))
                return Response(data, status, content_type="application/json")
            return await app(request)
    elif kind == "wsgi":
        def wrapped(environ, start_response):
            path = environ.get("PATH_INFO", "")
            if path.startswith(STEP_PREFIX) and environ.get("REQUEST_METHOD") == "POST":
                length = int(environ.get("CONTENT_LENGTH") or 0)
                status, data = run_step_bounded(path[n:], environ["wsgi.input"].read(length),
                                                environ.get("HTTP_X_FORGE_STEP_TIMEOUT"))
                start_response(f"{status} {http.client.responses.get(status, '')}",
                               [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
                return [data]
            return app(environ, start_response)
    else:
        async def wrapped(scope, receive, send):
            if scope["type"] == "http" and scope["path"].startswith(STEP_PREFIX) and scope["method"] == "POST":
                import asyncio

                body = b""
                while True:
                    message = await receive()
                    body += message.get("body", b"")
                    if not message.get("more_body"):
                        break
                limit = dict(scope.get("headers") or ()).get(b"x-forge-step-timeout", b"").decode()
                status, data = await asyncio.to_thread(run_step_bounded, scope["path"][n:], body, limit)
                await send({"type": "http.response.start", "status": status,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(data)).encode())]})
                await send({"type": "http.response.body", "body": data})
                return
            await app(scope, receive, send)
    wrapped.__forge_kind__ = kind
    return wrapped
