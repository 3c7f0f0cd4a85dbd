"""The HTTP/1.1 connection protocol and server life cycle, shared by the lean loop and asyncio.

Threading model: one event-loop thread owns every socket and all connection state. Sync handlers and
WSGI apps run on a small thread pool and hand results back with `loop.call_soon_threadsafe`;
coroutine apps run as tasks on the asyncio loop. Nothing here blocks the loop.
"""

import os
import sys
import time

from ._http import HttpError, RequestParser, body_allowed, http_date, status_line

_PING_HOST = b"ping"


def _env_number(name, default, cast=float):
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = cast(raw)
    except ValueError:
        raise SystemExit(f"forge_runtime: {name}={raw!r} is not a number") from None
    if value < 0:
        raise SystemExit(f"forge_runtime: {name} must not be negative")
    return value


class Config:
    """Server settings, from the environment (see docs/runtime.md)."""

    def __init__(self, port=None, host=None):
        env = os.environ
        self.host = host or env.get("FORGE_HOST") or "0.0.0.0"
        self.port = int(port if port is not None else _env_number("PORT", 8080, int))
        self.max_body = _env_number("FORGE_MAX_BODY", 1 << 20, int)
        self.max_header_bytes = _env_number("FORGE_MAX_HEADER_BYTES", 32768, int)
        self.max_headers = _env_number("FORGE_MAX_HEADERS", 100, int)
        self.idle_timeout = _env_number("FORGE_IDLE_TIMEOUT", 5.0)
        self.read_timeout = _env_number("FORGE_READ_TIMEOUT", 10.0)
        self.drain_seconds = _env_number("FORGE_DRAIN_SECONDS", 10.0)
        self.threads = _env_number("FORGE_THREADS", 32, int)
        # The watchdog (0: off). A request with no response head after this long gets 504.
        self.request_timeout = _env_number("FORGE_REQUEST_TIMEOUT", 0.0)
        self.access_log = env.get("FORGE_ACCESS_LOG", "1").strip().lower() not in ("0", "false", "no", "off", "")
        self.loop = (env.get("FORGE_LOOP") or "auto").strip().lower()
        if self.loop not in ("auto", "lean", "asyncio"):
            raise SystemExit(f"forge_runtime: FORGE_LOOP must be auto, lean or asyncio, not {self.loop!r}")


class AccessLog:
    """One JSON object per line on stdout, written in batches once per loop iteration."""

    def __init__(self, loop):
        self.loop = loop
        self.buf = []
        self.enabled = True
        try:
            from _json import encode_basestring_ascii as q
        except ImportError:  # pragma: no cover - every CPython build we ship has _json
            from json.encoder import encode_basestring_ascii as q
        self.q = q

    def add(self, req, peer, status, nbytes, t0, timeout=False):
        if not self.enabled:
            return
        q = self.q
        if req is not None:
            target = req.raw_path if not req.query_string else req.raw_path + b"?" + req.query_string
            method = q(req.method)
            path = q(target.decode("latin-1"))
            proto = req.http_version
        else:
            method = path = "null"
            proto = "1.1"
        remote = q(peer[0]) if isinstance(peer, tuple) and peer else "null"
        now = time.time()
        line = '{"ts":%.3f,"remote":%s,"method":%s,"path":%s,"proto":"HTTP/%s","status":%d,"bytes":%d,"dur_ms":%.3f}\n' % (
            now, remote, method, path, proto, status, nbytes, (time.monotonic() - t0) * 1000.0,
        )
        if timeout:
            line = line[:-2] + ',"timeout":true}\n'
        if not self.buf:
            self.loop.call_soon(self.flush)
        self.buf.append(line)

    def flush(self):
        if not self.buf:
            return
        data = "".join(self.buf).encode("ascii")
        self.buf.clear()
        try:
            while data:
                n = os.write(1, data)
                data = data[n:]
        except BlockingIOError:
            pass  # stdout is a full non-blocking pipe: drop the rest of this batch, never block
        except OSError:
            self.enabled = False  # stdout closed: stop logging, keep serving


def log_event(event, **fields):
    """A JSON line on stderr for server events (start, stop, errors)."""
    from _json import encode_basestring_ascii as q

    parts = ['"event":' + q(event)]
    for k, v in fields.items():
        if isinstance(v, bool):
            v = "true" if v else "false"
        elif isinstance(v, (int, float)):
            v = repr(v)
        else:
            v = q(str(v))
        parts.append(q(k) + ":" + v)
    try:
        sys.stderr.write("{" + ",".join(parts) + "}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def report_exception(where):
    import traceback

    try:
        log_event("error", where=where, traceback=traceback.format_exc())
    except Exception:  # pragma: no cover
        pass


class Server:
    """State shared by all connections; the `dispatch` attribute is set by the app adapter."""

    def __init__(self, config, loop):
        self.config = config
        self.loop = loop
        self.conns = set()
        self.draining = False
        self.access_log = AccessLog(loop) if config.access_log else None
        self._date_sec = -1
        self._date_line = b""
        self.dispatch = None
        self.sockname = (config.host, config.port)
        self._stop_callbacks = []
        self._drain_deadline = 0.0
        self._close_listener = None
        self.on_drained = None  # callable run (once) when draining finishes
        self._sweep_every = max(0.05, min(1.0, config.idle_timeout / 4 or 1.0, config.read_timeout / 4 or 1.0,
                                          config.request_timeout / 4 or 1.0))
        self.request_timeout = config.request_timeout
        self.pool = None      # the ThreadPool whose stuck workers the watchdog replaces
        self.timeouts = 0     # requests the watchdog answered with 504

    def date_line(self):
        t = time.time()
        sec = int(t)
        if sec != self._date_sec:
            self._date_sec = sec
            self._date_line = ("date: " + http_date(sec) + "\r\n").encode("ascii")
        return self._date_line

    def build_head(self, status, headers, length, keep, http10, line=None):
        """headers: list of (bytes, bytes); length None -> chunked (HTTP/1.1) or close-delimited."""
        parts = [line or status_line(status)]
        for name, value in headers:
            parts.append(b"%s: %s\r\n" % (name, value))
        if length is not None:
            parts.append(b"content-length: %d\r\n" % length)
        elif status >= 200 and status not in (204, 304) and not http10:
            parts.append(b"transfer-encoding: chunked\r\n")
        parts.append(self.date_line())
        if not keep or self.draining:
            parts.append(b"connection: close\r\n")
        elif http10:
            parts.append(b"connection: keep-alive\r\n")
        parts.append(b"\r\n")
        return b"".join(parts)

    # -- timeouts ---------------------------------------------------------------------------------

    def start_sweeper(self):
        self.loop.call_later(self._sweep_every, self._sweep)

    def _sweep(self):
        if self.on_drained is None and self.draining:
            return  # drained already
        now = time.monotonic()
        for conn in list(self.conns):
            if conn.busy:
                if conn.req_deadline and now >= conn.req_deadline and not conn.closed:
                    conn.time_out(now)
                continue
            if conn.closed:
                continue
            if conn.reading:
                if now >= conn.deadline:
                    conn.reject(HttpError(408, "request not received in time"))
            elif now >= conn.deadline or self.draining:
                conn.close()
        if self.draining:
            active = any(c.in_flight() for c in self.conns if not c.closed)
            if not active or now >= self._drain_deadline:
                self._finish_drain()
                return
        self.loop.call_later(self._sweep_every if not self.draining else 0.02, self._sweep)

    # -- shutdown ---------------------------------------------------------------------------------

    def request_limit(self, req):
        """Seconds `req` may run before its response head: FORGE_REQUEST_TIMEOUT, or for a Workflow
        step (which forge_runtime.cloudflare bounds by the step's own declared timeout, sent as
        X-Forge-Step-Timeout) that timeout and a second, if longer."""
        limit = self.request_timeout
        if req.path.startswith("/_forge/steps/"):
            step = req.headers.get("x-forge-step-timeout")
            if step:
                try:
                    limit = max(limit, float(step) + 1.0)
                except ValueError:
                    pass
        return limit

    def abandon_worker(self, ident):
        """A sync handler on thread `ident` ran past the request timeout: have the pool replace it."""
        if self.pool is not None:
            return self.pool.abandon(ident)
        return False

    def begin_shutdown(self, signame="signal"):
        if self.draining:
            log_event("drain_aborted", reason=f"second {signame}")
            self._drain_deadline = 0.0
            return
        self.draining = True
        self._drain_deadline = time.monotonic() + self.config.drain_seconds
        in_flight = sum(1 for c in self.conns if c.in_flight())
        log_event("draining", signal=signame, in_flight=in_flight, drain_seconds=self.config.drain_seconds)
        if self._close_listener is not None:
            try:
                self._close_listener()
            except Exception:  # pragma: no cover
                pass
            self._close_listener = None
        for conn in list(self.conns):
            if not conn.busy and not conn.reading:
                conn.close()
        self._sweep_every = 0.02
        self.loop.call_soon(self._sweep)

    def _finish_drain(self):
        left = [c for c in self.conns if not c.closed]
        unfinished = sum(1 for c in left if c.busy or c.sending())
        for conn in left:
            conn.abort()
        if self.access_log is not None:
            self.access_log.flush()
        cb, self.on_drained = self.on_drained, None
        if cb is not None:
            cb(unfinished)


_LINGER_SECONDS = 2.0
# Every read lands here first (event-loop thread only); the parser copies what it keeps.
READ_BUFFER = memoryview(bytearray(65536))
_PING_RESPONSE_HEADERS = [(b"content-type", b"text/plain; charset=utf-8")]
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class HttpConnection:
    """asyncio-compatible Protocol for one client connection (works on LeanLoop too)."""

    __slots__ = (
        "server", "loop", "parser", "transport", "peer", "busy", "reading", "deadline", "closed",
        "client_eof", "paused_reading", "paused_writing", "waiters", "req", "t0", "status", "nbytes",
        "chunked", "keep", "in_advance", "dead", "disconnect_waiters",
        "req_deadline", "timed_out", "task", "worker",
    )

    def __init__(self, server):
        self.server = server
        self.loop = server.loop
        cfg = server.config
        self.parser = RequestParser(cfg.max_body, cfg.max_header_bytes, cfg.max_headers)
        self.transport = None
        self.peer = None
        self.busy = False
        self.reading = False
        self.deadline = 0.0
        self.closed = False
        self.client_eof = False
        self.paused_reading = False
        self.paused_writing = False
        self.waiters = []
        self.disconnect_waiters = []
        self.req = None
        self.t0 = 0.0
        self.status = 0
        self.nbytes = 0
        self.chunked = False
        self.keep = True
        self.in_advance = False
        self.dead = False
        self.req_deadline = 0.0  # watchdog: when the current request's response head is due (0: none)
        self.timed_out = False   # the watchdog answered for the app: what the app sends later is dropped
        self.task = None         # the asyncio task running the current request (coroutine apps)
        self.worker = None       # the pool thread running the current request (sync apps)

    # -- asyncio.Protocol -------------------------------------------------------------------------

    def connection_made(self, transport):
        self.transport = transport
        self.peer = transport.get_extra_info("peername")
        self.deadline = time.monotonic() + self.server.config.idle_timeout
        self.server.conns.add(self)
        if self.server.draining:
            transport.close()

    def data_received(self, data):
        if self.dead:
            return
        parser = self.parser
        parser.feed(data)
        if self.busy:
            if len(parser.buf) > self.server.config.max_header_bytes + self.server.config.max_body:
                self._pause_reading()
            return
        if not self.reading:
            self.reading = True
            self.deadline = time.monotonic() + self.server.config.read_timeout
        self._advance()

    # asyncio.BufferedProtocol (the asyncio path mixes the ABC in): read into one shared buffer
    # instead of a fresh 256 KiB bytes object per recv (musl's malloc mmaps/munmaps each of those).

    def get_buffer(self, sizehint):
        return READ_BUFFER

    def buffer_updated(self, nbytes):
        self.data_received(READ_BUFFER[:nbytes])

    def eof_received(self):
        self.client_eof = True
        self.keep = False
        if self.busy:
            return True  # half-closed: the response can still be sent
        return False

    def connection_lost(self, exc):
        self.closed = True
        self.server.conns.discard(self)
        self._wake(self.waiters)
        self._wake(self.disconnect_waiters)

    def pause_writing(self):
        self.paused_writing = True

    def resume_writing(self):
        self.paused_writing = False
        self._wake(self.waiters)

    @staticmethod
    def _wake(waiters):
        if waiters:
            ws = waiters[:]
            waiters.clear()
            for w in ws:
                w()

    # -- request flow -----------------------------------------------------------------------------

    def _pause_reading(self):
        if not self.paused_reading and not self.closed:
            self.paused_reading = True
            self.transport.pause_reading()

    def _advance(self):
        """Parse and dispatch the next request, if one is complete."""
        self.in_advance = True
        try:
            while not self.busy and not self.dead and not self.closed:
                try:
                    req = self.parser.next_request()
                except HttpError as exc:
                    self.reject(exc)
                    return
                if req is None:
                    if self.parser.want_continue:
                        self.parser.want_continue = False
                        self.transport.write(_CONTINUE)
                    return
                self.reading = False
                self.req = req
                req.client = self.peer
                self.busy = True
                self.t0 = time.monotonic()
                self.keep = req.keep_alive and not self.server.draining and not self.client_eof
                self.status = 0
                self.nbytes = 0
                self.chunked = False
                if req.host == _PING_HOST and req.path == "/" and req.method in ("GET", "HEAD"):
                    self._ping(req)
                    continue
                if self.server.request_timeout:
                    self.req_deadline = self.t0 + self.server.request_limit(req)
                self.server.dispatch(self, req)
        finally:
            self.in_advance = False

    def _ping(self, req):
        body = b"ok" if req.method == "GET" else b""
        head = self.server.build_head(200, _PING_RESPONSE_HEADERS, 2, self.keep, req.http_version == "1.0")
        self.send_full(head + body, 200, len(body))

    def reject(self, exc):
        """Answer a request we won't serve (4xx/5xx from the parser or a timeout) and close."""
        self.dead = True
        self.keep = False
        if self.closed:
            return
        body = (exc.reason + "\n").encode("latin-1", "replace")
        head = self.server.build_head(
            exc.status, [(b"content-type", b"text/plain; charset=utf-8")], len(body), False, False
        )
        self.transport.write(head + body)
        if self.server.access_log is not None:
            self.server.access_log.add(None, self.peer, exc.status, len(body), self.t0 or time.monotonic())
        self.reading = False
        # Lingering close: send FIN after the response but keep reading (and discarding) for a
        # moment. Closing with unread input would make the kernel send RST, and a client still
        # uploading (the usual case for a 413) could lose the response before reading it.
        try:
            self.transport.write_eof()
        except (AttributeError, NotImplementedError, OSError, RuntimeError):
            self.transport.close()
            return
        self.deadline = time.monotonic() + _LINGER_SECONDS

    def time_out(self, now):
        """The watchdog: the request ran past its limit with no response head sent. Answer 504 (and
        close), log it, cancel the coroutine or have the pool replace the stuck thread; whatever the
        app sends later is dropped."""
        server = self.server
        req = self.req
        self.timed_out = True
        self.keep = False
        task, self.task = self.task, None
        worker = self.worker
        replaced = server.abandon_worker(worker) if worker is not None else False
        server.timeouts += 1
        log_event("request_timeout", method=req.method, path=req.path,
                  seconds=round(now - self.t0, 3), limit=server.request_limit(req),
                  worker=("replaced" if replaced else "stuck") if worker is not None
                  else ("cancelled" if task is not None else "queued"))
        body = b"request timed out\n"
        head = server.build_head(504, [(b"content-type", b"text/plain; charset=utf-8")], len(body), False,
                                 req.http_version == "1.0")
        if req.method == "HEAD":
            body = b""
        self.status = 504
        self.nbytes = len(body)
        if server.access_log is not None:
            server.access_log.add(req, self.peer, 504, len(body), self.t0, timeout=True)
        self.busy = False
        self.req = None
        self.req_deadline = 0.0
        self.dead = True
        if not self.closed:
            self.transport.write(head + body)
            self.transport.close()
        self._wake(self.disconnect_waiters)
        if task is not None:
            task.cancel()

    def in_flight(self):
        """What the drain waits for: a request being read, handled or streamed, or its response
        still being sent."""
        return self.busy or self.reading or self.sending()

    def sending(self):
        """A finished response may still sit in the transport's buffer (a slow client): the drain
        waits for it, and close() flushes it before closing."""
        return not self.closed and self.transport is not None and self.transport.get_write_buffer_size() > 0

    def close(self):
        self.dead = True
        if not self.closed and self.transport is not None:
            self.transport.close()

    def abort(self):
        self.dead = True
        if not self.closed and self.transport is not None:
            abort = getattr(self.transport, "abort", None)
            (abort or self.transport.close)()

    def _done(self):
        """The current response is complete (or abandoned)."""
        server = self.server
        if server.access_log is not None:
            server.access_log.add(self.req, self.peer, self.status, self.nbytes, self.t0)
        self.busy = False
        self.req = None
        self.req_deadline = 0.0
        self.task = None
        self._wake(self.disconnect_waiters)
        if self.closed:
            return
        if not self.keep or server.draining or self.client_eof:
            self.dead = True
            self.transport.close()
            return
        if self.paused_reading:
            self.paused_reading = False
            self.transport.resume_reading()
        if self.parser.buf:
            self.reading = True
            self.deadline = time.monotonic() + server.config.read_timeout
            if not self.in_advance:
                self._advance()
        else:
            self.reading = False
            self.deadline = time.monotonic() + server.config.idle_timeout

    # -- response API (event-loop thread only) ----------------------------------------------------

    def send_full(self, data, status, nbytes):
        """A whole response (head + body) in one write."""
        if self.timed_out:
            return
        self.status = status
        self.nbytes = nbytes
        if not self.closed:
            self.transport.write(data)
        self._done()

    def start(self, head, status, chunked):
        if self.timed_out:
            return
        self.req_deadline = 0.0  # the head is out: the watchdog does not cut a streamed body
        self.status = status
        self.chunked = chunked
        if not self.closed:
            self.transport.write(head)

    def send(self, data):
        if self.closed or not data or self.timed_out:
            return
        self.nbytes += len(data)
        if self.chunked:
            self.transport.write(b"%x\r\n%s\r\n" % (len(data), data))
        else:
            self.transport.write(data)

    def end(self):
        if self.timed_out:
            return
        if self.chunked and not self.closed:
            self.transport.write(b"0\r\n\r\n")
        self._done()

    def fail(self):
        """Abandon a response whose head is already out: close so the client sees truncation."""
        if self.timed_out:
            return
        self.keep = False
        if not self.closed:
            self.transport.close()
        self._done()

    # thread-side helpers: called from pool threads, run on the loop thread

    def send_and_release(self, data, lock):
        self.send(data)
        if self.paused_writing and not self.closed:
            self.waiters.append(lock.release)
        else:
            lock.release()


def header_pairs(headers):
    """dict or (name, value) pairs of str/bytes -> (list of (bytes, bytes), content_length, close)."""
    from ._http import check_header

    items = headers.items() if isinstance(headers, dict) else headers
    out = []
    length = None
    close = False
    for name, value in items:
        if isinstance(name, str):
            name = name.encode("latin-1")
        if isinstance(value, str):
            value = value.encode("latin-1")
        elif isinstance(value, int):
            value = b"%d" % value
        check_header(name, value)
        low = name.lower()
        if low == b"content-length":
            if not value.isdigit():
                raise ValueError(f"invalid content-length {value!r}")
            length = int(value)
            continue
        if low == b"transfer-encoding":
            continue  # framing is the server's business
        if low == b"connection":
            close = b"close" in value.lower()
            continue
        out.append((name, value))
    return out, length, close


def is_http10(req):
    return req.http_version == "1.0"


def body_ok(status, req):
    return body_allowed(status, req.method)
