"""Adapters from the three workload kinds to the connection's response API.

sync handler, WSGI      -> run on the thread pool; results go back via loop.call_soon_threadsafe
async handler, ASGI     -> tasks on the asyncio loop
"""

import _thread
import sys

from ._server import body_ok, header_pairs, is_http10, report_exception
from ._types import to_response

_ERROR_HEADERS = [(b"content-type", b"text/plain; charset=utf-8")]
_ERROR_BODY = b"Internal Server Error\n"


def _bytes(chunk):
    if isinstance(chunk, str):
        return chunk.encode("utf-8")
    if isinstance(chunk, (bytes, bytearray, memoryview)):
        return bytes(chunk)
    raise TypeError(f"stream chunks must be bytes or str, not {type(chunk).__name__}")


def _prepare(conn, req, resp):
    """Response -> (status, header pairs, body bytes or None, stream or None, content-length)."""
    status = resp.status
    pairs, length, close = header_pairs(resp.headers)
    if close:
        conn.keep = False
    body = resp.body
    if isinstance(body, str):
        body = body.encode("utf-8")
    if isinstance(body, (bytes, bytearray, memoryview)):
        return status, pairs, bytes(body), None, None
    if isinstance(body, (list, tuple)):
        return status, pairs, b"".join(_bytes(c) for c in body), None, None
    if body is None:
        return status, pairs, b"", None, None
    if not (hasattr(body, "__aiter__") or hasattr(body, "__iter__")):
        raise TypeError(f"Response.body must be bytes, str or an (async) iterator, not {type(body).__name__}")
    return status, pairs, None, body, length


def _full(conn, req, status, pairs, body):
    """Build a complete response (head + body) -> (bytes, body length sent)."""
    server = conn.server
    allowed = body_ok(status, req)
    length = len(body) if (allowed or req.method == "HEAD") and status not in (204, 304) and status >= 200 else None
    head = server.build_head(status, pairs, length, conn.keep, is_http10(req))
    if not allowed:
        return head, 0
    return head + body, len(body)


def _error_full(conn, req):
    conn.keep = False
    return _full(conn, req, 500, _ERROR_HEADERS, _ERROR_BODY)


def _close_iter(it):
    close = getattr(it, "close", None)
    if close is not None:
        try:
            close()
        except Exception:
            report_exception("closing response iterator")


# -- thread side --------------------------------------------------------------------------------------


class ThreadWriter:
    """Streams a response from a pool thread; each chunk waits until the loop has taken it and
    the socket is not backed up (backpressure), or the client is gone."""

    def __init__(self, conn):
        self.conn = conn
        self.call = conn.loop.call_soon_threadsafe

    def start(self, head, status, chunked):
        self.call(self.conn.start, head, status, chunked)

    def write(self, data):
        conn = self.conn
        if not data or conn.closed or conn.timed_out:
            return not (conn.closed or conn.timed_out)
        lock = _thread.allocate_lock()
        lock.acquire()
        self.call(conn.send_and_release, data, lock)
        lock.acquire()
        return not (conn.closed or conn.timed_out)

    def end(self):
        self.call(self.conn.end)

    def fail(self):
        self.call(self.conn.fail)


def _stream_from_thread(conn, req, status, pairs, stream, length):
    server = conn.server
    w = ThreadWriter(conn)
    http10 = is_http10(req)
    if length is None and http10:
        conn.keep = False
    allowed = body_ok(status, req)
    head = server.build_head(status, pairs, length, conn.keep, http10)
    w.start(head, status, allowed and length is None and not http10)
    if not allowed:
        _close_iter(stream)
        w.end()
        return
    try:
        if hasattr(stream, "__aiter__"):
            import asyncio

            async def pump():
                async for chunk in stream:
                    if not w.write(_bytes(chunk)):
                        break

            asyncio.run(pump())
        else:
            try:
                for chunk in stream:
                    if not w.write(_bytes(chunk)):
                        break
            finally:
                _close_iter(stream)
    except Exception:
        report_exception(f"streaming {req.method} {req.path}")
        w.fail()
        return
    w.end()


def _run_watched(run, conn, req):
    """A pool job: skipped once the watchdog has answered it (504 while queued); otherwise run
    with its thread recorded, so the watchdog can tell a stuck worker."""
    if conn.timed_out:
        return
    conn.worker = _thread.get_ident()
    try:
        run(conn, req)
    finally:
        conn.worker = None


def make_sync_handler(app, pool):
    def job(conn, req):
        _run_watched(run, conn, req)

    def run(conn, req):
        try:
            resp = to_response(app(req))
            status, pairs, body, stream, length = _prepare(conn, req, resp)
        except Exception:
            report_exception(f"handler {req.method} {req.path}")
            data, n = _error_full(conn, req)
            conn.loop.call_soon_threadsafe(conn.send_full, data, 500, n)
            return
        if stream is None:
            data, n = _full(conn, req, status, pairs, body)
            conn.loop.call_soon_threadsafe(conn.send_full, data, status, n)
        else:
            _stream_from_thread(conn, req, status, pairs, stream, length)

    def dispatch(conn, req):
        pool.submit(job, conn, req)

    return dispatch


# -- WSGI -----------------------------------------------------------------------------------------------


def wsgi_environ(req, server):
    import io

    from ._http import unquote_bytes

    host = req.host.decode("latin-1") if req.host else server.sockname[0]
    if host.startswith("["):
        name, _, port = host[1:].partition("]")
        port = port[1:]
    else:
        name, _, port = host.partition(":")
    env = {
        "REQUEST_METHOD": req.method,
        "SCRIPT_NAME": "",
        "PATH_INFO": unquote_bytes(req.raw_path).decode("latin-1"),
        "QUERY_STRING": req.query_string.decode("latin-1"),
        "SERVER_NAME": name,
        "SERVER_PORT": port or str(server.sockname[1]),
        "SERVER_PROTOCOL": "HTTP/" + req.http_version,
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(req.body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "wsgi.input_terminated": True,
    }
    if isinstance(req.client, tuple) and req.client:
        env["REMOTE_ADDR"] = str(req.client[0])
        env["REMOTE_PORT"] = str(req.client[1])
    for name_b, value_b in req.raw_headers:
        if name_b == b"content-type":
            env["CONTENT_TYPE"] = value_b.decode("latin-1")
            continue
        if name_b == b"content-length" or name_b == b"transfer-encoding":
            continue
        if b"_" in name_b:
            continue  # would alias a dash header in HTTP_*; dropped like nginx and gunicorn do
        key = "HTTP_" + name_b.decode("latin-1").upper().replace("-", "_")
        value = value_b.decode("latin-1")
        if key in env:
            env[key] += "," + value
        else:
            env[key] = value
    if req.body or any(n == b"content-length" for n, _ in req.raw_headers):
        env["CONTENT_LENGTH"] = str(len(req.body))
    return env


def make_wsgi(app, pool):
    def job(conn, req):
        _run_watched(run, conn, req)

    def run(conn, req):
        server = conn.server
        state = {}  # status, headers, writer (once streaming)
        try:
            environ = wsgi_environ(req, server)
        except Exception:
            report_exception("building WSGI environ")
            data, n = _error_full(conn, req)
            conn.loop.call_soon_threadsafe(conn.send_full, data, 500, n)
            return

        def start_response(status, headers, exc_info=None):
            if exc_info is not None:
                try:
                    if "writer" in state:
                        raise exc_info[1].with_traceback(exc_info[2])
                finally:
                    exc_info = None
            elif "status" in state:
                raise AssertionError("start_response called twice without exc_info")
            if not isinstance(status, str) or len(status) < 3 or not status[:3].isdigit():
                raise ValueError(f"invalid WSGI status {status!r}")
            state["status"] = status
            state["headers"] = headers
            return write

        def begin_stream():
            code = int(state["status"][:3])
            pairs, length, close = header_pairs(state["headers"])
            if close:
                conn.keep = False
            http10 = is_http10(req)
            if length is None and http10:
                conn.keep = False
            line = b"HTTP/1.1 " + state["status"].encode("latin-1") + b"\r\n"
            head = server.build_head(code, pairs, length, conn.keep, http10, line)
            w = ThreadWriter(conn)
            allowed = body_ok(code, req)
            w.start(head, code, allowed and length is None and not http10)
            state["writer"] = w
            state["allowed"] = allowed
            return w

        def write(data):
            if "status" not in state:
                raise AssertionError("write() before start_response")
            w = state.get("writer") or begin_stream()
            if state["allowed"]:
                w.write(_bytes(data))

        result = None
        try:
            result = app(environ, start_response)
            if isinstance(result, (list, tuple)) and "writer" not in state:
                chunks = [_bytes(c) for c in result]
            else:
                chunks = []
                for chunk in result:
                    chunk = _bytes(chunk)
                    if not chunk:
                        continue
                    if "writer" in state:
                        if conn.closed:
                            break
                        if state["allowed"]:
                            state["writer"].write(chunk)
                    elif chunks:  # a second non-empty chunk: stream from here on
                        w = begin_stream()
                        if state["allowed"]:
                            w.write(chunks.pop())
                            w.write(chunk)
                    else:
                        chunks.append(chunk)
            if "status" not in state:
                raise AssertionError("WSGI app returned without calling start_response")
        except Exception:
            report_exception(f"WSGI app {req.method} {req.path}")
            if "writer" in state:
                state["writer"].fail()
            else:
                data, n = _error_full(conn, req)
                conn.loop.call_soon_threadsafe(conn.send_full, data, 500, n)
            return
        finally:
            if result is not None and hasattr(result, "close"):
                try:
                    result.close()
                except Exception:
                    report_exception("WSGI result close()")
        if "writer" in state:
            state["writer"].end()
            return
        try:
            code = int(state["status"][:3])
            pairs, length, close = header_pairs(state["headers"])
        except Exception:
            report_exception("WSGI response headers")
            data, n = _error_full(conn, req)
            conn.loop.call_soon_threadsafe(conn.send_full, data, 500, n)
            return
        if close:
            conn.keep = False
        body = b"".join(chunks)
        allowed = body_ok(code, req)
        line = b"HTTP/1.1 " + state["status"].encode("latin-1") + b"\r\n"
        send_len = len(body) if length is None else length
        if code < 200 or code in (204, 304):
            send_len = None
        head = server.build_head(code, pairs, send_len, conn.keep, is_http10(req), line)
        data = head + body if allowed else head
        conn.loop.call_soon_threadsafe(conn.send_full, data, code, len(body) if allowed else 0)

    def dispatch(conn, req):
        pool.submit(job, conn, req)

    return dispatch


# -- coroutine side (asyncio) ---------------------------------------------------------------------------


async def _wait_writable(conn):
    if conn.paused_writing and not conn.closed:
        fut = conn.loop.create_future()

        def wake():
            if not fut.done():
                fut.set_result(None)

        conn.waiters.append(wake)
        await fut


def make_async_handler(app, pool):
    import asyncio

    async def next_in_pool(it, sentinel):
        loop = asyncio.get_running_loop()
        fut = loop.create_future()

        def work():
            try:
                value = next(it, sentinel)
            except BaseException as exc:  # noqa: BLE001 - forwarded to the awaiting task
                # bound now: Python unbinds `exc` when the except block ends, before the loop
                # runs the callback (a NameError there left the stream's task waiting forever)
                loop.call_soon_threadsafe(lambda e=exc: fut.done() or fut.set_exception(e))
            else:
                loop.call_soon_threadsafe(lambda: fut.done() or fut.set_result(value))

        pool.submit(work)
        return await fut

    async def run(conn, req):
        try:
            result = app(req)
            if hasattr(result, "__await__"):
                result = await result
            resp = to_response(result)
            status, pairs, body, stream, length = _prepare(conn, req, resp)
        except Exception:
            report_exception(f"handler {req.method} {req.path}")
            data, n = _error_full(conn, req)
            conn.send_full(data, 500, n)
            return
        if stream is None:
            data, n = _full(conn, req, status, pairs, body)
            conn.send_full(data, status, n)
            return
        http10 = is_http10(req)
        if length is None and http10:
            conn.keep = False
        allowed = body_ok(status, req)
        conn.start(conn.server.build_head(status, pairs, length, conn.keep, http10), status,
                   allowed and length is None and not http10)
        if not allowed:
            _close_iter(stream)
            conn.end()
            return
        try:
            if hasattr(stream, "__aiter__"):
                try:
                    async for chunk in stream:
                        if conn.closed:
                            break
                        conn.send(_bytes(chunk))
                        await _wait_writable(conn)
                finally:
                    aclose = getattr(stream, "aclose", None)
                    if aclose is not None:
                        await aclose()
            else:
                sentinel = object()
                it = iter(stream)
                try:
                    while not conn.closed:
                        chunk = await next_in_pool(it, sentinel)
                        if chunk is sentinel:
                            break
                        conn.send(_bytes(chunk))
                        await _wait_writable(conn)
                finally:
                    _close_iter(it)
        except Exception:
            report_exception(f"streaming {req.method} {req.path}")
            conn.fail()
            return
        conn.end()

    def dispatch(conn, req):
        conn.task = conn.loop.create_task(run(conn, req))

    return dispatch


class Lifespan:
    """ASGI lifespan protocol ("auto": an app that raises on the lifespan scope has none)."""

    def __init__(self, app, state):
        import asyncio

        self.app = app
        self.state = state
        self.queue = asyncio.Queue()
        self.startup_done = asyncio.Event()
        self.shutdown_done = asyncio.Event()
        self.failed = None
        self.supported = True
        self.task = None

    async def _receive(self):
        return await self.queue.get()

    async def _send(self, message):
        t = message.get("type")
        if t == "lifespan.startup.complete":
            self.startup_done.set()
        elif t == "lifespan.startup.failed":
            self.failed = message.get("message", "") or "startup failed"
            self.startup_done.set()
        elif t == "lifespan.shutdown.complete":
            self.shutdown_done.set()
        elif t == "lifespan.shutdown.failed":
            self.failed = message.get("message", "") or "shutdown failed"
            self.shutdown_done.set()
        else:
            raise RuntimeError(f"unexpected lifespan message {t!r}")

    async def _main(self):
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": self.state}
        try:
            await self.app(scope, self._receive, self._send)
        except BaseException as exc:
            if not self.startup_done.is_set():
                self.supported = False
                if not isinstance(exc, Exception):
                    raise
                from ._server import log_event

                log_event("lifespan_unsupported", error=f"{type(exc).__name__}: {exc}")
            else:
                report_exception("ASGI lifespan")
        finally:
            self.startup_done.set()
            self.shutdown_done.set()

    async def startup(self):
        import asyncio

        self.task = asyncio.get_running_loop().create_task(self._main())
        await self.queue.put({"type": "lifespan.startup"})
        await self.startup_done.wait()
        return self.failed is None

    async def shutdown(self, timeout):
        import asyncio

        if not self.supported or self.task is None or self.task.done():
            return
        await self.queue.put({"type": "lifespan.shutdown"})
        try:
            await asyncio.wait_for(self.shutdown_done.wait(), timeout)
        except asyncio.TimeoutError:
            from ._server import log_event

            log_event("lifespan_shutdown_timeout", seconds=timeout)


def make_asgi(app, ready, state):
    """ready: asyncio.Event set once lifespan startup is complete."""

    async def run(conn, req):
        server = conn.server
        if not ready.is_set():
            await ready.wait()
        host, port = server.sockname[0], server.sockname[1]
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": req.http_version,
            "method": req.method,
            "scheme": "http",
            "path": req.path,
            "raw_path": req.raw_path,
            "query_string": req.query_string,
            "root_path": "",
            "headers": req.raw_headers,
            "client": req.client if isinstance(req.client, tuple) else None,
            "server": (host, port),
            "state": dict(state),
        }
        http10 = is_http10(req)
        st = {"started": False, "complete": False, "streaming": False, "body_sent": False}

        async def receive():
            if not st["body_sent"]:
                st["body_sent"] = True
                return {"type": "http.request", "body": req.body, "more_body": False}
            if not conn.closed and conn.req is req:
                fut = conn.loop.create_future()
                conn.disconnect_waiters.append(lambda: fut.done() or fut.set_result(None))
                await fut
            return {"type": "http.disconnect"}

        async def send(message):
            t = message["type"]
            if t == "http.response.start":
                if st["started"]:
                    raise RuntimeError("http.response.start sent twice")
                st["started"] = True
                st["status"] = int(message["status"])
                pairs, length, close = header_pairs(message.get("headers") or ())
                if close:
                    conn.keep = False
                st["pairs"] = pairs
                st["length"] = length
                return
            if t != "http.response.body":
                raise RuntimeError(f"unexpected ASGI message {t!r}")
            if not st["started"]:
                raise RuntimeError("http.response.body before http.response.start")
            if st["complete"]:
                raise RuntimeError("http.response.body after the response completed")
            body = message.get("body", b"")
            more = message.get("more_body", False)
            status = st["status"]
            allowed = body_ok(status, req)
            if not st["streaming"]:
                if not more:
                    st["complete"] = True
                    length = st["length"] if st["length"] is not None else len(body)
                    if status < 200 or status in (204, 304):
                        length = None
                    head = server.build_head(status, st["pairs"], length, conn.keep, http10)
                    conn.send_full(head + body if allowed else head, status, len(body) if allowed else 0)
                    return
                st["streaming"] = True
                length = st["length"]
                if length is None and http10:
                    conn.keep = False
                conn.start(server.build_head(status, st["pairs"], length, conn.keep, http10), status,
                           allowed and length is None and not http10)
            if allowed and body:
                conn.send(bytes(body))
            if not more:
                st["complete"] = True
                conn.end()
                return
            await _wait_writable(conn)

        try:
            await app(scope, receive, send)
        except Exception:
            report_exception(f"ASGI app {req.method} {req.path}")
            if not st["started"] or (not st["streaming"] and not st["complete"]):
                data, n = _error_full(conn, req)
                conn.send_full(data, 500, n)
            elif not st["complete"]:
                conn.fail()
            return
        if not st["complete"]:
            if not st["started"]:
                from ._server import log_event

                log_event("error", where=f"ASGI app {req.method} {req.path}", error="returned without a response")
                data, n = _error_full(conn, req)
                conn.send_full(data, 500, n)
            elif not st["streaming"]:
                # start sent but no body message: an empty body.
                status = st["status"]
                length = 0 if status >= 200 and status not in (204, 304) else None
                conn.send_full(server.build_head(status, st["pairs"], length, conn.keep, http10), status, 0)
            else:
                conn.fail()

    def dispatch(conn, req):
        conn.task = conn.loop.create_task(run(conn, req))

    return dispatch


__all__ = ["make_sync_handler", "make_wsgi", "make_async_handler", "make_asgi", "Lifespan"]
