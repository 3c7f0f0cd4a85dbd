"""The request watchdog (FORGE_REQUEST_TIMEOUT, issue 15): past the timeout the client gets 504, the
access log says so, the worker is reclaimed and the server keeps serving; a runaway handler cannot
hold the process at SIGTERM. Run against `python -m forge_runtime` like test_runtime_server.py (and
against forge-built images by tests/test_runtime_container.py, with the same command template)."""

import json
import signal
import threading
import time

import pytest

from tests.test_runtime_support import (
    Reader,
    build_request,
    connect,
    request,
)

pytestmark = pytest.mark.timeout(120)

# (app, loop, the slow path: never finishes within the tests, the fast path, its body)
KINDS = {
    "handler-lean": ("handler_app:app", "lean", "/sleep?s=60", "/", b"hello from forge"),
    "handler-asyncio": ("handler_app:app", "asyncio", "/sleep?s=60", "/", b"hello from forge"),
    "wsgi": ("wsgi_app:app", "auto", "/sleep?s=60", "/", b"hello from wsgi"),
    "async": ("async_app:app", "auto", "/sleep?s=60", "/", b"hello from async forge"),
    "asgi": ("asgi_app:app", "auto", "/sleep?s=60", "/", b"hello from asgi"),
    "asgi-thread": ("asgi_app:app", "auto", "/sleep?s=60&thread=1", "/", b"hello from asgi"),
}


def _timeout_lines(srv):
    return [e for e in srv.access_log() if e.get("timeout")]


@pytest.mark.parametrize("kind", list(KINDS))
def test_over_time_request_gets_504_and_the_server_keeps_serving(start_server, kind):
    app, loop, slow, fast, fast_body = KINDS[kind]
    # Two worker threads and two stuck handlers: without reclaiming, the pool would be starved.
    srv = start_server(app, env={"FORGE_REQUEST_TIMEOUT": "0.5", "FORGE_THREADS": "2", "FORGE_LOOP": loop})
    for _ in range(2):
        t0 = time.monotonic()
        status, h, body = request(srv.port, "GET", slow, timeout=20)
        took = time.monotonic() - t0
        assert (status, body) == (504, b"request timed out\n")
        assert h["connection"] == "close"
        assert 0.45 <= took < 10, took
        # The process still serves, at once, on the same worker pool.
        assert request(srv.port, "GET", fast, timeout=10)[2] == fast_body
    srv.assert_alive()
    time.sleep(0.2)  # the access log is written in batches
    lines = _timeout_lines(srv)
    assert len(lines) == 2 and all(e["status"] == 504 and e["path"] == slow for e in lines)
    assert all(e["dur_ms"] >= 450 for e in lines)
    assert not any(e.get("timeout") for e in srv.access_log() if e["status"] != 504)
    events = [json.loads(line) for line in srv.stderr().splitlines() if line.startswith("{")]
    timeouts = [e for e in events if e["event"] == "request_timeout"]
    assert len(timeouts) == 2 and timeouts[0]["limit"] == 0.5
    if kind in ("async", "asgi", "asgi-thread"):
        assert timeouts[0]["worker"] == "cancelled"
    else:
        # Each stuck worker was abandoned and replaced (at most FORGE_THREADS abandoned at once).
        assert [e["worker"] for e in timeouts] == ["replaced", "replaced"]


@pytest.mark.parametrize("kind", ["handler-lean", "handler-asyncio", "wsgi"])
def test_stuck_sync_handler_does_not_block_the_requests_queued_behind_it(start_server, kind):
    app, loop, slow, fast, fast_body = KINDS[kind]
    srv = start_server(app, env={"FORGE_REQUEST_TIMEOUT": "2", "FORGE_THREADS": "1", "FORGE_LOOP": loop})
    results = {}

    def slow_request():
        results["slow"] = request(srv.port, "GET", slow, timeout=30)

    t = threading.Thread(target=slow_request)
    t.start()
    time.sleep(1.0)
    # The only worker is stuck: this request waits in the queue until the watchdog replaces the
    # stuck worker (at 2 s), then it is served, within its own limit.
    t0 = time.monotonic()
    status, _, body = request(srv.port, "GET", fast, timeout=30)
    assert (status, body) == (200, fast_body), time.monotonic() - t0
    t.join(30)
    assert results["slow"][0] == 504
    # Meanwhile and after, other connections are served without delay.
    for _ in range(5):
        assert request(srv.port, "GET", fast)[2] == fast_body
    srv.assert_alive()


def test_abandoned_workers_are_bounded_and_the_server_still_answers(start_server):
    # FORGE_THREADS=1: one stuck worker may be abandoned and replaced; the second stuck one is not
    # (the limit), so requests behind it get their 504 on time, and the readiness probe still answers.
    srv = start_server("handler_app:app", env={"FORGE_REQUEST_TIMEOUT": "0.5", "FORGE_THREADS": "1"})
    assert request(srv.port, "GET", "/sleep?s=60", timeout=20)[0] == 504
    assert request(srv.port, "GET", "/sleep?s=60", timeout=20)[0] == 504
    t0 = time.monotonic()
    assert request(srv.port, "GET", "/", timeout=20)[0] == 504  # queued behind a stuck worker
    assert time.monotonic() - t0 < 10
    assert request(srv.port, "GET", "/", headers={"Host": "ping"})[0] == 200
    assert srv.proc.poll() is None
    deadline = time.monotonic() + 10   # in a container the log reaches the file through docker, later
    while srv.stderr().count('"request_timeout"') < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    events = [json.loads(line) for line in srv.stderr().splitlines() if line.startswith("{")]
    assert [e["worker"] for e in events if e["event"] == "request_timeout"] == ["replaced", "stuck", "queued"]


def test_fast_requests_and_streams_are_untouched(start_server, tmp_path):
    srv = start_server("handler_app:app", env={"FORGE_REQUEST_TIMEOUT": "0.5"})
    s = connect(srv.port)
    r = Reader(s)
    for _ in range(3):  # keep-alive survives
        s.sendall(build_request("GET", "/sleep?s=0.05"))
        assert r.read_response()[2] == b"slept"
    # A streamed body whose head went out in time is not cut at the timeout.
    release = tmp_path / "release"
    s.sendall(build_request("GET", f"/sse?release={release}"))
    time.sleep(1.0)
    release.write_text("go")
    status, h, body, _ = r.read_response()
    assert status == 200 and h["content-type"].startswith("text/event-stream") and body
    r.close()
    assert not _timeout_lines(srv)


def test_no_timeout_by_default(start_server):
    srv = start_server("handler_app:app", env={"FORGE_LOOP": "lean"})
    assert request(srv.port, "GET", "/sleep?s=1.2", timeout=20)[2] == b"slept"


@pytest.mark.parametrize("kind", ["handler-lean", "handler-asyncio", "wsgi", "async", "asgi", "asgi-thread",
                                  "handler-imported-threading"])
def test_sigterm_with_a_stuck_handler_exits_0_at_the_timeout(start_server, tmp_path, kind):
    if kind == "handler-imported-threading":
        # The stuck handler imported threading first (it owns threading's main thread).
        app, loop = "handler_app:app", "lean"
        slow = f"/block?started={tmp_path / 'started'}&release={tmp_path / 'never'}&limit=60&import_threading=1"
    else:
        app, loop, slow, _, _ = KINDS[kind]
    srv = start_server(app, env={"FORGE_REQUEST_TIMEOUT": "1.5", "FORGE_DRAIN_SECONDS": "20", "FORGE_LOOP": loop})
    results = {}
    t = threading.Thread(target=lambda: results.update(r=request(srv.port, "GET", slow, timeout=30)))
    t.start()
    time.sleep(0.5)  # in the handler now
    t0 = time.monotonic()
    srv.signal(signal.SIGTERM)
    # The drain would wait 20 s; the watchdog answers at 1.5 s and the process leaves then.
    assert srv.wait(15) == 0
    assert time.monotonic() - t0 < 10
    t.join(15)
    assert results["r"][0] == 504
    assert '"event":"stopped"' in srv.stderr()


def test_bad_value_is_refused(start_server):
    srv = start_server("handler_app:app", env={"FORGE_REQUEST_TIMEOUT": "soon"}, ready=False)
    assert srv.wait(30) != 0
    assert "FORGE_REQUEST_TIMEOUT" in srv.stderr()


STEP_APP = '''
import time
import forge_runtime

@forge_runtime.step("slow", timeout="5 seconds")
def slow(params, outputs):
    time.sleep(1.5)
    return {"ok": True}

def app(request):
    time.sleep(float(request.query.get("s", "0")))
    return "app"
'''


def test_workflow_steps_keep_their_own_timeout(tmp_path):
    # A step is bounded by its declared timeout (X-Forge-Step-Timeout, enforced by
    # forge_runtime.cloudflare), not by a shorter FORGE_REQUEST_TIMEOUT. Run under CPython directly.
    import os
    import subprocess
    import sys

    from tests.plugins.registry import free_port

    (tmp_path / "app.py").write_text(STEP_APP)
    port = free_port()
    env = {**os.environ, "FORGE_REQUEST_TIMEOUT": "0.5", "PORT": str(port)}
    proc = subprocess.Popen([sys.executable, "-m", "forge_runtime", "app:app"], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                assert request(port, "GET", "/")[2] == b"app"
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        body = b'{"params": {}, "outputs": {}}'
        status, _, data = request(port, "POST", "/_forge/steps/slow", timeout=20,
                                  headers={"X-Forge-Step-Timeout": "5", "Content-Type": "application/json"}, body=body)
        assert (status, json.loads(data)) == (200, {"ok": True})
        assert request(port, "GET", "/?s=1.5", timeout=20)[0] == 504      # the app's own routes are bounded
        # Without the header a step path is an ordinary request.
        assert request(port, "POST", "/_forge/steps/slow", timeout=20, body=body)[0] == 504
    finally:
        proc.terminate()
        proc.wait(15)
