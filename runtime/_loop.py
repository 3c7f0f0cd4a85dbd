"""A lean epoll event loop with the slice of asyncio's Protocol/Transport API the server needs.

Why not asyncio for everything: `import asyncio` pulls in ~90 modules (logging, ssl, typing, inspect,
subprocess, concurrent.futures, ...). Under CPython here that is ~35 ms of a cold start, against
~1 ms for this module, which imports only C modules (_socket, select, _thread, _signal, _queue).
Sync handlers and WSGI apps run on this loop; coroutine apps (ASGI, async handlers) need asyncio and
get it. The protocol class is the same for both loops (benchmarks/runtime/RESULTS.md has the numbers).
"""

import _socket
import _thread
import os
import select
import time

# The C halves, not `collections`/`heapq`: those pull in collections' pure-Python machinery
# (namedtuple, OrderedDict, reprlib, operator, keyword): ~3 ms of a cold start, for two names.
from _collections import deque
from _heapq import heappop, heappush

_EPOLLIN = select.EPOLLIN if hasattr(select, "epoll") else select.POLLIN
_EPOLLOUT = select.EPOLLOUT if hasattr(select, "epoll") else select.POLLOUT
_EPOLLERR = select.EPOLLERR if hasattr(select, "epoll") else select.POLLERR
_EPOLLHUP = select.EPOLLHUP if hasattr(select, "epoll") else select.POLLHUP

_HIGH_WATER = 64 * 1024
_LOW_WATER = 16 * 1024


class _Poller:
    """epoll where there is one; poll(2) elsewhere (timeout in seconds either way)."""

    def __init__(self):
        if hasattr(select, "epoll"):
            self._p = select.epoll()
            self._ms = False
        else:  # pragma: no cover - non-Linux development hosts
            self._p = select.poll()
            self._ms = True

    def register(self, fd, mask):
        self._p.register(fd, mask)

    def modify(self, fd, mask):
        self._p.modify(fd, mask)

    def unregister(self, fd):
        try:
            self._p.unregister(fd)
        except (OSError, KeyError, ValueError):
            pass

    def poll(self, timeout):
        if self._ms:
            return self._p.poll(None if timeout is None else int(timeout * 1000))
        return self._p.poll(-1 if timeout is None else timeout)


class TimerHandle:
    __slots__ = ("when", "cb", "args", "cancelled")

    def __init__(self, when, cb, args):
        self.when = when
        self.cb = cb
        self.args = args
        self.cancelled = False

    def cancel(self):
        self.cancelled = True

    def __lt__(self, other):
        return self.when < other.when


class LeanLoop:
    def __init__(self):
        self._poller = _Poller()
        self._handlers = {}  # fd -> callable(events)
        self._ready = deque()
        self._timers = []
        self._threadsafe = deque()
        self._wake_pending = False
        self._stopping = False
        self._rfd, self._wfd = os.pipe()
        os.set_blocking(self._rfd, False)
        os.set_blocking(self._wfd, False)
        self.add_reader(self._rfd, self._on_wake)
        self.wakeup_fd = self._wfd
        self.read_buffer = memoryview(bytearray(65536))

    # -- scheduling -------------------------------------------------------------------------------

    time = staticmethod(time.monotonic)

    def call_soon(self, cb, *args):
        self._ready.append((cb, args))

    def call_later(self, delay, cb, *args):
        h = TimerHandle(time.monotonic() + delay, cb, args)
        heappush(self._timers, h)
        return h

    def call_soon_threadsafe(self, cb, *args):
        self._threadsafe.append((cb, args))
        if not self._wake_pending:
            self._wake_pending = True
            try:
                os.write(self._wfd, b"\0")
            except (BlockingIOError, InterruptedError):
                pass

    def _on_wake(self, _events):
        try:
            while os.read(self._rfd, 4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        self._wake_pending = False
        ts = self._threadsafe
        ready = self._ready
        while ts:
            ready.append(ts.popleft())

    def stop(self):
        self._stopping = True

    def add_reader(self, fd, handler, mask=_EPOLLIN):
        self._handlers[fd] = handler
        self._poller.register(fd, mask)

    def modify(self, fd, mask):
        self._poller.modify(fd, mask)

    def remove(self, fd):
        self._handlers.pop(fd, None)
        self._poller.unregister(fd)

    def run_forever(self):
        self._stopping = False
        poll = self._poller.poll
        handlers = self._handlers
        ready = self._ready
        timers = self._timers
        while not self._stopping:
            if ready:
                timeout = 0
            elif timers:
                timeout = max(0.0, timers[0].when - time.monotonic())
            else:
                timeout = None
            try:
                events = poll(timeout)
            except InterruptedError:  # pragma: no cover - PEP 475 retries for us
                events = ()
            for fd, ev in events:
                h = handlers.get(fd)
                if h is not None:
                    try:
                        h(ev)
                    except Exception:  # a bug in one connection must not take the server down
                        _report_exception()
            if timers:
                now = time.monotonic()
                while timers and timers[0].when <= now:
                    t = heappop(timers)
                    if not t.cancelled:
                        ready.append((t.cb, t.args))
            for _ in range(len(ready)):
                cb, args = ready.popleft()
                try:
                    cb(*args)
                except Exception:
                    _report_exception()

    def close(self):
        self.remove(self._rfd)
        os.close(self._rfd)
        os.close(self._wfd)

    # -- serving ----------------------------------------------------------------------------------

    def serve(self, sock, protocol_factory):
        """Accept connections on a listening, non-blocking _socket.socket. Returns a closer."""
        family = sock.family
        fd = sock.fileno()

        def on_accept(_events):
            for _ in range(128):
                try:
                    cfd, addr = sock._accept()
                except (BlockingIOError, InterruptedError):
                    return
                except OSError:  # ECONNABORTED, EMFILE, ...: keep serving the others
                    return
                conn = _socket.socket(family, _socket.SOCK_STREAM, 0, cfd)
                conn.setblocking(False)
                try:
                    conn.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
                except OSError:
                    pass
                LeanTransport(self, conn, protocol_factory(), addr)

        self.add_reader(fd, on_accept)

        def close():
            self.remove(fd)
            sock.close()

        return close


class LeanTransport:
    __slots__ = ("_loop", "_sock", "_fd", "_protocol", "_peer", "_wbuf", "_wsize", "_mask",
                 "_closing", "_closed", "_paused_writing", "_reading", "_eof", "_eof_out")

    def __init__(self, loop, sock, protocol, peer):
        self._loop = loop
        self._sock = sock
        self._fd = sock.fileno()
        self._protocol = protocol
        self._peer = peer
        self._wbuf = deque()
        self._wsize = 0
        self._mask = _EPOLLIN
        self._closing = False
        self._closed = False
        self._paused_writing = False
        self._reading = True
        self._eof = False
        self._eof_out = False
        loop.add_reader(self._fd, self._on_events)
        protocol.connection_made(self)

    def get_extra_info(self, name, default=None):
        if name == "peername":
            return self._peer
        if name == "sockname":
            try:
                return self._sock.getsockname()
            except OSError:
                return default
        if name == "socket":
            return self._sock
        return default

    def is_closing(self):
        return self._closing

    def _set_mask(self, mask):
        if mask != self._mask and not self._closed:
            self._mask = mask
            self._loop.modify(self._fd, mask)

    def pause_reading(self):
        if self._reading:
            self._reading = False
            self._set_mask(self._mask & ~_EPOLLIN)

    def resume_reading(self):
        if not self._reading and not self._closing:
            self._reading = True
            self._set_mask(self._mask | _EPOLLIN)

    def _on_events(self, ev):
        if ev & (_EPOLLERR | _EPOLLHUP):
            # Peer gone (RST, or both directions shut): nothing can be sent any more. Always reported
            # by epoll, even with reading paused, so close now rather than spin.
            self._force_close(ConnectionResetError("connection reset by peer"))
            return
        if ev & _EPOLLOUT:
            self._flush()
        if ev & _EPOLLIN and self._reading and not self._closed:
            buf = self._loop.read_buffer
            try:
                n = self._sock.recv_into(buf)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._force_close(exc)
                return
            if n:
                # A view into the loop's one read buffer (no per-read allocation: musl's malloc
                # would mmap/munmap a 64 KiB bytes object every time); valid during the call only.
                self._protocol.data_received(buf[:n])
            else:
                self._eof = True
                self.pause_reading()
                keep_open = self._protocol.eof_received()
                if not keep_open:
                    self.close()

    def write(self, data):
        if self._closed or not data:
            return
        if not self._wbuf:
            try:
                n = self._sock.send(data)
            except (BlockingIOError, InterruptedError):
                n = 0
            except OSError as exc:
                self._force_close(exc)
                return
            if n == len(data):
                return
            data = memoryview(data)[n:]
            self._set_mask(self._mask | _EPOLLOUT)
        self._wbuf.append(data)
        self._wsize += len(data)
        if self._wsize > _HIGH_WATER and not self._paused_writing:
            self._paused_writing = True
            self._protocol.pause_writing()

    def get_write_buffer_size(self):
        return self._wsize

    def _flush(self):
        wbuf = self._wbuf
        while wbuf:
            data = wbuf[0]
            try:
                n = self._sock.send(data)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._force_close(exc)
                return
            self._wsize -= n
            if n < len(data):
                wbuf[0] = memoryview(data)[n:]
                return
            wbuf.popleft()
        self._set_mask(self._mask & ~_EPOLLOUT)
        if self._paused_writing and self._wsize <= _LOW_WATER:
            self._paused_writing = False
            self._protocol.resume_writing()
        if self._eof_out and not self._closing:
            self._shutdown_write()
        if self._closing:
            self._force_close(None)

    def write_eof(self):
        """Shut down the sending side once the buffer is flushed; reading goes on."""
        if self._closed or self._eof_out:
            return
        self._eof_out = True
        if not self._wbuf:
            self._shutdown_write()

    def _shutdown_write(self):
        try:
            self._sock.shutdown(_socket.SHUT_WR)
        except OSError as exc:
            self._force_close(exc)

    def close(self):
        if self._closing:
            return
        self._closing = True
        self.pause_reading()
        if not self._wbuf:
            self._force_close(None)

    def abort(self):
        self._closing = True
        self._force_close(None)

    def _force_close(self, exc):
        if self._closed:
            return
        self._closed = True
        self._closing = True
        self._wbuf.clear()
        self._wsize = 0
        self._loop.remove(self._fd)
        try:
            self._sock.close()
        except OSError:
            pass
        self._loop.call_soon(self._protocol.connection_lost, exc)


def listen(host, port, backlog=1024, std=False):
    """A bound, listening, non-blocking socket: `socket.socket` when std (asyncio wants one), else a
    bare `_socket.socket` (no enum-laden `socket` module import)."""
    family = _socket.AF_INET6 if ":" in host else _socket.AF_INET
    if std:
        import socket

        sock = socket.socket(family, socket.SOCK_STREAM)
    else:
        sock = _socket.socket(family, _socket.SOCK_STREAM)
    try:
        sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
        if family == _socket.AF_INET6:
            try:
                sock.setsockopt(_socket.IPPROTO_IPV6, _socket.IPV6_V6ONLY, 0)
            except OSError:
                pass
        sock.bind((host, port))
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class ThreadPool:
    """Grows on demand up to `size` threads (raw _thread: the `threading` module isn't needed).

    The request watchdog can abandon a worker stuck in a handler (a thread cannot be killed): the
    pool then starts a replacement, so it is not starved, and the stuck thread, if its handler ever
    returns, rejoins the pool when there is room or ends. At most `size` threads are abandoned at a
    time; past that a stuck worker is not replaced (the pool shrinks, queued requests get their 504)."""

    def __init__(self, size):
        import _queue

        self._q = _queue.SimpleQueue()
        self._size = max(1, size)
        self._count = 0      # live workers, the abandoned ones not counted
        self._idle = 0       # workers free for a job (each queued job claims one)
        self._backlog = 0    # queued jobs no worker has claimed yet
        self._abandoned = set()  # idents of abandoned workers still running their handler
        self._lock = _thread.allocate_lock()
        self._closed = False

    def submit(self, fn, *args):
        spawn = False
        with self._lock:
            if self._closed:
                raise RuntimeError("forge_runtime: the handler thread pool is shut down")
            if self._idle:
                self._idle -= 1
            elif self._count < self._size:
                self._count += 1
                spawn = True
            else:
                self._backlog += 1
        self._q.put((fn, args))
        if spawn:
            _thread.start_new_thread(self._worker, ())

    def abandon(self, ident):
        """The worker `ident` is stuck in a handler past the request timeout: stop counting it and
        start a replacement if jobs are waiting. -> False when the abandoned limit is reached (then
        the worker stays counted, and nothing replaces it)."""
        spawn = False
        with self._lock:
            if ident in self._abandoned:
                return True
            if self._closed or len(self._abandoned) >= self._size:
                return False
            self._abandoned.add(ident)
            self._count -= 1
            if self._backlog:
                self._backlog -= 1
                self._count += 1
                spawn = True
        if spawn:
            _thread.start_new_thread(self._worker, ())
        return True

    def abandoned(self):
        return len(self._abandoned)

    def shutdown(self):
        """Ask every worker to exit once idle (a busy one finishes its job first). Workers are raw
        threads, which interpreter exit never waits for, except one that imported `threading`
        first: threading takes that thread for the main thread, and exit joins it."""
        with self._lock:
            self._closed = True
            workers = self._count
        for _ in range(workers):
            self._q.put((None, ()))

    def _worker(self):
        get = self._q.get
        lock = self._lock
        me = _thread.get_ident()
        while True:
            fn, args = get()
            if fn is None:
                return
            try:
                fn(*args)
            except BaseException:  # the callables handle their own errors; never lose a worker
                _report_exception()
            with lock:
                if me in self._abandoned:
                    self._abandoned.discard(me)
                    if self._closed or self._count >= self._size:
                        return  # replaced: this thread ends
                    self._count += 1  # room again: rejoin
                if self._backlog:
                    self._backlog -= 1
                else:
                    self._idle += 1


def _report_exception():
    from ._server import report_exception

    report_exception("event loop callback")
