"""forge_runtime.run(): pick the loop for the app's kind, listen, serve, drain on SIGTERM/SIGINT."""

import _signal
import _thread

from ._detect import detect, is_coroutine_callable
from ._server import Config, HttpConnection, Server, log_event

_SIGNALS = (("SIGTERM", _signal.SIGTERM), ("SIGINT", _signal.SIGINT))


def serve(app, port=None, host=None, resume_gc=False):
    kind = detect(app)
    cfg = Config(port, host)
    is_async = kind == "asgi" or (kind == "handler" and is_coroutine_callable(app))
    if cfg.loop == "lean" and is_async:
        raise SystemExit("forge_runtime: FORGE_LOOP=lean cannot run coroutine apps (ASGI, async handlers)")
    if is_async or cfg.loop == "asyncio":
        rc = _serve_asyncio(app, kind, is_async, cfg, resume_gc)
    else:
        rc = _serve_lean(app, kind, cfg, resume_gc)
    if rc:
        raise SystemExit(rc)


def _listening(server, kind, loop_name, resume_gc):
    log_event("listening", host=server.sockname[0], port=server.sockname[1], kind=kind, loop=loop_name)
    if resume_gc:
        # Start-up is over (forge_runtime.pause_gc_for_startup): what exists now lives as long as
        # the process, so park it where collections don't look, then collect again.
        import gc

        gc.freeze()
        gc.enable()


def _sync_dispatch(app, kind, pool):
    from ._apps import make_sync_handler, make_wsgi

    return make_wsgi(app, pool) if kind == "wsgi" else make_sync_handler(app, pool)


def _serve_lean(app, kind, cfg, resume_gc):
    from ._loop import LeanLoop, ThreadPool, listen

    loop = LeanLoop()
    server = Server(cfg, loop)
    pool = ThreadPool(cfg.threads)
    server.pool = pool
    server.dispatch = _sync_dispatch(app, kind, pool)
    sock = listen(cfg.host, cfg.port)
    server.sockname = sock.getsockname()[:2]
    server._close_listener = loop.serve(sock, lambda: HttpConnection(server))
    server.start_sweeper()
    stopped = []

    def drained(left):
        stopped.append(left)
        loop.stop()

    server.on_drained = drained
    for name, sig in _SIGNALS:
        _signal.signal(sig, lambda _s, _f, name=name: loop.call_soon_threadsafe(server.begin_shutdown, name))
    # A signal delivered to a pool thread would not interrupt epoll in the main thread: have the C
    # handler write to the loop's self-pipe so the Python handler runs promptly.
    old_wakeup = _signal.set_wakeup_fd(loop.wakeup_fd, warn_on_full_buffer=False)
    _listening(server, kind, "lean", resume_gc)
    try:
        loop.run_forever()
    finally:
        _signal.set_wakeup_fd(old_wakeup)
        for _name, sig in _SIGNALS:
            _signal.signal(sig, _signal.SIG_DFL)
        pool.shutdown()
    log_event("stopped", abandoned=stopped[0] if stopped else 0)
    if _worker_holding_the_exit():
        _exit_now(0)
    return 0


# How long the exit waits for the worker that owns `threading` once the pool was told to stop: an
# idle one ends at once; one still running a handler is past the drain deadline, so abandoned.
_OWNER_GRACE_SECONDS = 0.5


def _worker_holding_the_exit():
    """True when `threading` was first imported on a pool thread (a handler importing logging, an
    async body run with asyncio.run, ...) and that thread is still running a handler. threading
    takes such a thread for the main thread, and interpreter exit would wait for it forever. The
    thread is asked, not the connections: a client that reset its connection leaves a stuck
    handler that the drain no longer counts."""
    import sys

    threading = sys.modules.get("threading")
    if threading is None or threading.main_thread().ident == _thread.get_ident():
        return False
    owner = threading.main_thread()
    owner.join(_OWNER_GRACE_SECONDS)
    return owner.is_alive()


def _exit_now(code):
    """Exit without joining a handler thread abandoned past the drain deadline: run the atexit
    handlers, flush, leave. (threading's own exit hooks and the interpreter's finalisation are
    skipped: they would wait for that thread.)"""
    import atexit
    import os
    import sys

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # a closed, replaced or missing stream must not block the exit
            pass
    os._exit(code)


def _serve_asyncio(app, kind, is_async, cfg, resume_gc):
    import asyncio

    from ._apps import Lifespan, make_asgi, make_async_handler
    from ._loop import ThreadPool, listen

    class _AsyncioConnection(HttpConnection, asyncio.BufferedProtocol):
        __slots__ = ()

    async def main():
        loop = asyncio.get_running_loop()
        server = Server(cfg, loop)
        pool = ThreadPool(cfg.threads)
        server.pool = pool
        ready = asyncio.Event()
        state = {}
        if kind == "asgi":
            server.dispatch = make_asgi(app, ready, state)
        elif is_async:
            server.dispatch = make_async_handler(app, pool)
        else:
            server.dispatch = _sync_dispatch(app, kind, pool)
        sock = listen(cfg.host, cfg.port, std=True)
        server.sockname = sock.getsockname()[:2]
        aserver = await loop.create_server(lambda: _AsyncioConnection(server), sock=sock, backlog=1024)
        server._close_listener = aserver.close
        done = loop.create_future()
        server.on_drained = lambda left: done.done() or done.set_result(left)
        for name, sig in _SIGNALS:
            loop.add_signal_handler(sig, server.begin_shutdown, name)
        server.start_sweeper()
        _listening(server, kind, "asyncio", resume_gc)
        lifespan = None
        if kind == "asgi":
            lifespan = Lifespan(app, state)
            startup = loop.create_task(lifespan.startup())
            await asyncio.wait([startup, done], return_when=asyncio.FIRST_COMPLETED)
            if startup.done() and not startup.result():
                log_event("lifespan_startup_failed", message=lifespan.failed)
                server.draining = True
                aserver.close()
                for conn in list(server.conns):
                    conn.abort()
                return 1
            if not startup.done():
                startup.cancel()
        ready.set()
        left = await done
        if lifespan is not None and lifespan.supported:
            await lifespan.shutdown(max(cfg.drain_seconds, 1.0))
        log_event("stopped", abandoned=left)
        if left or server.timeouts:
            # Work may still run on the loop's default executor (asyncio.to_thread in a handler the
            # watchdog or the drain gave up on): asyncio.run would wait for it to finish. Leave it
            # behind a fresh, empty executor instead; the exit below does not wait for it either.
            from concurrent.futures import ThreadPoolExecutor

            loop.set_default_executor(ThreadPoolExecutor(1))
            stuck.append(True)
        return 0

    stuck = []
    rc = asyncio.run(main())
    if stuck and _threads_holding_the_exit():
        _exit_now(rc)
    return rc


def _threads_holding_the_exit():
    """True when a non-daemon thread (an executor's worker running a handler abandoned by the
    watchdog or the drain) is still alive after a short grace: interpreter exit would join it."""
    import threading

    end = _time() + _OWNER_GRACE_SECONDS
    me = threading.current_thread()
    for t in threading.enumerate():
        if t is me or t.daemon:
            continue
        t.join(max(0.0, end - _time()))
        if t.is_alive():
            return True
    return False


def _time():
    import time

    return time.monotonic()
