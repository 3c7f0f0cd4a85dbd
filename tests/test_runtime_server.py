"""The forge_runtime server over real sockets, as a subprocess (see test_runtime_support for how to
point these tests at a forge-built binary). Plain-handler tests run on both loops: the lean epoll loop
(default for sync apps) and asyncio (FORGE_LOOP=asyncio)."""

import json
import os
import signal
import socket
import struct
import threading
import time

import pytest

from tests.test_runtime_support import (
    Reader,
    build_request,
    connect,
    raw_exchange,
    request,
)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(params=["lean", "asyncio"])
def loop_name(request):
    return request.param


@pytest.fixture
def server(start_server, loop_name):
    return start_server("handler_app:app", env={"FORGE_LOOP": loop_name})


def test_hello_and_return_types(server):
    status, h, body = request(server.port, "GET", "/")
    assert (status, body) == (200, b"hello from forge")
    assert h["content-type"] == "text/plain; charset=utf-8"
    assert h["content-length"] == "16"
    assert h["date"].endswith(" GMT")
    status, h, body = request(server.port, "GET", "/json")
    assert (status, json.loads(body), h["content-type"]) == (200, {"ok": True}, "application/json")
    status, h, body = request(server.port, "GET", "/bytes")
    assert (status, body) == (200, b"\x00\x01binary")
    status, h, body = request(server.port, "GET", "/none")
    assert (status, body) == (204, b"")
    assert "content-length" not in h
    status, h, _ = request(server.port, "GET", "/headers")
    assert h["x-one"] == "1" and h["x-two"] == "2, 3"
    status, _, body = request(server.port, "GET", "/missing")
    assert status == 404


def test_request_fields(server):
    body = b'{"k": [1, 2]}'
    status, _, data = request(
        server.port, "POST", "/echo?a=1&b=x%20y&b=z&plus=1+2", headers={"X-Custom": "Value", "Content-Type": "application/json"}, body=body
    )
    info = json.loads(data)
    assert status == 200
    assert info["method"] == "POST"
    assert info["path"] == "/echo"
    assert info["query"] == {"a": "1", "b": "z", "plus": "1 2"}
    assert info["query_string"] == "a=1&b=x%20y&b=z&plus=1+2"
    assert ["x-custom", "Value"] in info["headers"]
    assert info["body"] == body.decode()
    assert info["client"][0] == "127.0.0.1"


def test_percent_decoded_path(server):
    status, _, data = request(server.port, "GET", "/%65cho")  # %65 = 'e'
    assert status == 200
    info = json.loads(data)
    assert info["path"] == "/echo" and info["raw_path"] == "/%65cho"


def test_keep_alive_sequential_and_pipelined(server):
    s = connect(server.port)
    r = Reader(s)
    for _ in range(3):
        s.sendall(build_request("GET", "/"))
        status, h, body, _ = r.read_response()
        assert (status, body) == (200, b"hello from forge")
        assert "connection" not in h  # persistent by default in HTTP/1.1
    # Three pipelined requests in one write, answered in order on the same connection.
    s.sendall(build_request("GET", "/") + build_request("GET", "/json") + build_request("POST", "/echo", body=b"abc"))
    assert r.read_response()[2] == b"hello from forge"
    assert json.loads(r.read_response()[2]) == {"ok": True}
    assert json.loads(r.read_response()[2])["body"] == "abc"
    # Connection: close is honoured.
    s.sendall(build_request("GET", "/", headers={"Connection": "close"}))
    status, h, _, _ = r.read_response()
    assert status == 200 and h["connection"] == "close"
    assert r.at_eof()
    r.close()


def test_http10_keep_alive_rules(server):
    out = raw_exchange(server.port, b"GET / HTTP/1.0\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200 ") and b"connection: close" in out.lower()
    s = connect(server.port)
    r = Reader(s)
    s.sendall(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    status, h, body, _ = r.read_response()
    assert h["connection"] == "keep-alive" and body == b"hello from forge"
    s.sendall(b"GET /json HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert r.read_response()[0] == 200
    r.close()


def test_chunked_response_streaming(server):
    s = connect(server.port)
    r = Reader(s)
    s.sendall(build_request("GET", "/stream?n=4"))
    status, h, body, chunks = r.read_response()
    assert status == 200 and h["transfer-encoding"] == "chunked"
    assert chunks == [f"chunk {i}\n".encode() for i in range(4)]
    # The connection stays usable after a chunked response.
    s.sendall(build_request("GET", "/"))
    assert r.read_response()[2] == b"hello from forge"
    r.close()


def test_async_iterator_body_from_sync_handler(server):
    s = connect(server.port)
    r = Reader(s)
    s.sendall(build_request("GET", "/astream"))
    assert r.read_response()[3] == [b"async 0\n", b"async 1\n", b"async 2\n"]
    r.close()


def test_sse_events_arrive_before_stream_ends(server, tmp_path):
    release = tmp_path / "release"
    s = connect(server.port)
    s.sendall(build_request("GET", f"/sse?release={release}"))
    f = s.makefile("rb")
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        head += f.readline()
    assert b"content-type: text/event-stream" in head.lower()
    assert b"transfer-encoding: chunked" in head.lower()
    # The first event is readable while the handler is blocked waiting for `release`.
    size = int(f.readline().strip(), 16)
    first = f.read(size)
    assert first == b"event: first\ndata: 1\n\n"
    assert not release.exists()
    release.write_text("go")
    f.readline()  # CRLF after chunk
    size = int(f.readline().strip(), 16)
    assert f.read(size) == b"event: second\ndata: 2\n\n"
    f.readline()
    assert f.readline() == b"0\r\n"
    s.close()


def test_chunked_request_body(server):
    s = connect(server.port)
    r = Reader(s)
    body = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nx-trailer: 1\r\n\r\n"
    s.sendall(build_request("POST", "/echo", headers={"Transfer-Encoding": "chunked"}, body=body))
    status, _, data, _ = r.read_response()
    info = json.loads(data)
    assert status == 200 and info["body"] == "hello, world" and info["body_len"] == 12
    r.close()


def test_expect_100_continue(server):
    s = connect(server.port)
    f = s.makefile("rb")
    s.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    assert f.readline() == b"HTTP/1.1 100 Continue\r\n"
    assert f.readline() == b"\r\n"
    s.sendall(b"hello")
    r = Reader(s)
    r.f = f
    status, _, data, _ = r.read_response()
    assert status == 200 and json.loads(data)["body"] == "hello"
    s.close()


def test_head_has_no_body(server):
    s = connect(server.port)
    r = Reader(s)
    s.sendall(build_request("HEAD", "/"))
    status, h, body, _ = r.read_response("HEAD")
    assert status == 200 and h["content-length"] == "16" and body == b""
    s.sendall(build_request("GET", "/"))  # the stream is still in sync: no stray body bytes
    assert r.read_response()[2] == b"hello from forge"
    r.close()


def test_handler_errors_are_500_and_server_survives(server):
    for path in ("/error", "/bad-return", "/evil-header"):
        status, h, body = request(server.port, "GET", path)
        assert status == 500, path
        assert b"set-cookie" not in body
    # An error mid-stream truncates the chunked body (no terminating chunk) and closes.
    s = connect(server.port)
    r = Reader(s)
    s.sendall(build_request("GET", "/stream-error"))
    with pytest.raises(ConnectionError):
        r.read_response()
    r.close()
    server.assert_alive()
    assert "boom" in server.stderr()


def test_large_response_backpressure(server):
    s = connect(server.port)
    r = Reader(s)
    s.sendall(build_request("GET", "/big?n=5000000"))
    status, h, body, _ = r.read_response()
    assert status == 200 and len(body) == 5_000_000 and set(body) == {ord("x")}
    r.close()


def test_body_too_large_413(start_server, loop_name):
    srv = start_server("handler_app:app", env={"FORGE_MAX_BODY": "1024", "FORGE_LOOP": loop_name})
    status, _, data = request(srv.port, "POST", "/echo", body=b"x" * 1024)
    assert status == 200 and json.loads(data)["body_len"] == 1024
    # Announced too large: refused before the body is read.
    out = raw_exchange(srv.port, b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1025\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 413 ")
    # Chunked, grows too large.
    chunk = b"400\r\n" + b"y" * 1024 + b"\r\n"
    out = raw_exchange(srv.port, b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk * 2)
    assert out.startswith(b"HTTP/1.1 413 ")
    srv.assert_alive()


def test_413_reaches_a_client_that_keeps_uploading(start_server, loop_name):
    """Lingering close: the server reads and discards what the client is still sending, so the
    kernel does not reset the connection and the 413 is not lost."""
    srv = start_server("handler_app:app", env={"FORGE_MAX_BODY": "1024", "FORGE_LOOP": loop_name})
    s = connect(srv.port, timeout=30)
    s.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4000000\r\n\r\n")
    sent = 0
    try:
        for _ in range(32):  # 2 MiB after the server has already answered
            s.sendall(b"z" * 65536)
            sent += 65536
    except (BrokenPipeError, ConnectionResetError):
        pass
    data = b""
    while True:
        part = s.recv(65536)
        if not part:
            break
        data += part
    s.close()
    assert data.startswith(b"HTTP/1.1 413 "), data[:80]
    assert sent == 32 * 65536  # the upload was not cut off by a reset
    srv.assert_alive()


def test_headers_too_large_431(start_server):
    srv = start_server("handler_app:app", env={"FORGE_MAX_HEADER_BYTES": "4096", "FORGE_MAX_HEADERS": "20"})
    big = b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n"
    assert raw_exchange(srv.port, big).startswith(b"HTTP/1.1 431 ")
    many = b"GET / HTTP/1.1\r\nHost: t\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(30)) + b"\r\n"
    assert raw_exchange(srv.port, many).startswith(b"HTTP/1.1 431 ")
    # Never terminated, just long: refused once past the limit, without waiting for a timeout.
    endless = b"GET / HTTP/1.1\r\nHost: t\r\n" + b"X-A: b\r\n" * 1000
    assert raw_exchange(srv.port, endless).startswith(b"HTTP/1.1 431 ")
    srv.assert_alive()


MALFORMED = [
    b"GARBAGE\r\n\r\n",
    b"GET /\r\n\r\n",
    b"GET / HTTP/1.1 extra\r\nHost: t\r\n\r\n",
    b"GET  / HTTP/1.1\r\nHost: t\r\n\r\n",
    b"G(T / HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET / HTTP/x.y\r\nHost: t\r\n\r\n",
    b"GET / FTP/1.1\r\nHost: t\r\n\r\n",
    b"GET nopath HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /\x01 HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost t\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: t\r\nBad Name: v\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: t\r\nX-A : v\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: t\r\n folded: v\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\x00b\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\rb\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: t\r\n: empty\r\n\r\n",
    b"GET / HTTP/1.1\r\n\r\n",  # no Host
    b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabcd\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0x2\r\nab\r\n0\r\n\r\n",
    b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"GET / HTTP/1.1\nHost: t\n\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS ClientHello
    b"GET http://user@host/ HTTP/1.1\r\nHost: t\r\n\r\n",
    b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com\r\n\r\n",
]

OTHER_4XX_5XX = [
    (b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505),
    (b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    (b"POST / HTTP/1.1\r\nHost: t\r\nExpect: tea\r\nContent-Length: 1\r\n\r\nx", 417),
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414),
]


def test_malformed_requests_get_400_and_server_keeps_serving(server):
    for data in MALFORMED:
        out = raw_exchange(server.port, data)
        assert out.startswith(b"HTTP/1.1 400 "), (data, out[:80])
        assert b"connection: close" in out.lower()
        server.assert_alive()
    for data, code in OTHER_4XX_5XX:
        out = raw_exchange(server.port, data)
        assert out.startswith(b"HTTP/1.1 %d " % code), (data[:60], out[:80])
        server.assert_alive()


def test_bad_request_after_good_one_on_same_connection(server):
    s = connect(server.port)
    r = Reader(s)
    s.sendall(build_request("GET", "/") + b"BROKEN LINE\r\n\r\n")
    assert r.read_response()[2] == b"hello from forge"
    assert r.read_response()[0] == 400
    assert r.at_eof()
    r.close()
    server.assert_alive()


def test_ping_probe(server):
    # Cloudflare's probe: absolute-form target http://ping/.
    out = raw_exchange(server.port, b"GET http://ping/ HTTP/1.1\r\nHost: ping\r\nConnection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200 ") and out.endswith(b"\r\n\r\nok")
    status, _, body = request(server.port, "GET", "/", headers={"Host": "ping"})
    assert (status, body) == (200, b"ok")
    # Other hosts reach the app.
    status, _, body = request(server.port, "GET", "/", headers={"Host": "example.com"})
    assert body == b"hello from forge"


def test_100_parallel_clients(server):
    results = []
    errors = []
    lock = threading.Lock()

    def client(i):
        try:
            s = connect(server.port, timeout=30)
            r = Reader(s)
            for j in range(5):
                body = f"{i}-{j}".encode()
                s.sendall(build_request("POST", "/echo", body=body))
                status, _, data, _ = r.read_response()
                got = json.loads(data)["body"]
                with lock:
                    results.append((status, got == body.decode()))
            r.close()
        except Exception as exc:  # noqa: BLE001
            with lock:
                errors.append(repr(exc))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:5]
    assert len(results) == 500 and all(s == 200 and ok for s, ok in results)
    # A slow handler must not stall the others (thread pool, loop never blocked).
    server.assert_alive()


def test_slow_handler_does_not_block_other_connections(server, tmp_path):
    started, release = tmp_path / "started", tmp_path / "release"
    s = connect(server.port)
    s.sendall(build_request("GET", f"/block?started={started}&release={release}"))
    while not started.exists():
        pass
    # While /block is held in the handler, other connections are served.
    for _ in range(5):
        assert request(server.port, "GET", "/")[0] == 200
    release.write_text("go")
    r = Reader(s)
    assert r.read_response()[2] == b"released"
    r.close()


def test_idle_keepalive_connection_is_closed(start_server, loop_name):
    srv = start_server("handler_app:app", env={"FORGE_IDLE_TIMEOUT": "0.3", "FORGE_LOOP": loop_name})
    s = connect(srv.port)
    r = Reader(s)
    s.sendall(build_request("GET", "/"))
    assert r.read_response()[0] == 200
    assert r.at_eof(timeout=15)  # closed by the server, silently
    r.close()
    # A connection that never sends anything is closed too.
    s = connect(srv.port)
    assert Reader(s).at_eof(timeout=15)
    s.close()


def test_slowloris_gets_408_and_does_not_hold_the_server(start_server, loop_name):
    srv = start_server(
        "handler_app:app", env={"FORGE_READ_TIMEOUT": "0.5", "FORGE_IDLE_TIMEOUT": "5", "FORGE_LOOP": loop_name}
    )
    # Trickle a header byte by byte: the deadline counts from the first byte and is not extended.
    s = connect(srv.port, timeout=15)
    s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n")
    received = b""
    stop = threading.Event()

    def trickle():
        while not stop.wait(0.05):
            try:
                s.sendall(b"X")
            except OSError:
                return

    t = threading.Thread(target=trickle)
    t.start()
    try:
        while True:
            part = s.recv(4096)
            if not part:
                break
            received += part
    except (ConnectionResetError, OSError):
        pass
    finally:
        stop.set()
        t.join()
        s.close()
    assert received.startswith(b"HTTP/1.1 408 "), received[:80]
    srv.assert_alive()


def test_access_log_is_json_per_request(start_server, loop_name):
    srv = start_server("handler_app:app", env={"FORGE_LOOP": loop_name})
    request(srv.port, "GET", "/json?x=1", headers={"User-Agent": 'quote"and\\slash'})
    request(srv.port, "POST", "/echo", body=b"12345")
    raw_exchange(srv.port, b"NOT HTTP\r\n\r\n")
    srv.signal(signal.SIGTERM)
    assert srv.wait() == 0
    entries = srv.access_log()
    # The readiness ping(s) come first; then our three requests, in order.
    ours = [e for e in entries if e["path"] != "/"]
    assert [(e["method"], e["path"], e["status"]) for e in ours] == [
        ("GET", "/json?x=1", 200),
        ("POST", "/echo", 200),
        (None, None, 400),
    ]
    for e in entries:
        assert set(e) == {"ts", "remote", "method", "path", "proto", "status", "bytes", "dur_ms"}
        assert e["remote"] == "127.0.0.1" and e["dur_ms"] >= 0 and isinstance(e["ts"], float)
    assert ours[0]["bytes"] == len(b'{"ok":true}')


def test_access_log_can_be_switched_off(start_server):
    srv = start_server("handler_app:app", env={"FORGE_ACCESS_LOG": "0"})
    assert request(srv.port, "GET", "/")[0] == 200
    srv.signal(signal.SIGTERM)
    assert srv.wait() == 0
    assert srv.stdout() == ""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_drains_in_flight_request_and_exits_0(start_server, loop_name, tmp_path, sig):
    srv = start_server("handler_app:app", env={"FORGE_LOOP": loop_name, "FORGE_DRAIN_SECONDS": "20"})
    started, release = tmp_path / "started", tmp_path / "release"
    s = connect(srv.port, timeout=30)
    s.sendall(build_request("GET", f"/block?started={started}&release={release}"))
    idle = connect(srv.port)  # an idle keep-alive connection: closed at once on shutdown
    while not started.exists():
        pass
    srv.signal(sig)
    assert Reader(idle).at_eof(timeout=15)
    idle.close()
    # New connections are refused once the listener is closed.
    for _ in range(200):
        try:
            connect(srv.port, timeout=1).close()
        except ConnectionRefusedError:
            break
        threading.Event().wait(0.01)
    else:
        pytest.fail("listener still accepting after SIGTERM")
    release.write_text("go")
    r = Reader(s)
    status, h, body, _ = r.read_response()
    assert (status, body) == (200, b"released")
    assert h["connection"] == "close"
    assert srv.wait(30) == 0
    r.close()
    assert '"event":"draining"' in srv.stderr()


def test_drain_finishes_sending_a_response_still_in_the_buffer(start_server, loop_name):
    # The handler is done, but most of its 20 MB still sits in the server's write buffer because the
    # client has not read yet: the drain must wait for it (before, it exited and cut it off at ~4 MB).
    srv = start_server("handler_app:app", env={"FORGE_LOOP": loop_name, "FORGE_DRAIN_SECONDS": "20"})
    s = connect(srv.port, timeout=30)
    s.sendall(build_request("GET", "/big?n=20000000"))
    time.sleep(0.5)
    srv.signal(signal.SIGTERM)
    time.sleep(0.3)
    status, _, body, _ = Reader(s).read_response()
    assert status == 200 and len(body) == 20_000_000 and set(body) == {ord("x")}
    s.close()
    assert srv.wait(30) == 0
    assert '"abandoned":0' in srv.stderr()


@pytest.mark.parametrize("owns_threading, client_gone", [(False, False), (True, False), (True, True)],
                         ids=["plain", "handler-imported-threading", "handler-imported-threading-client-gone"])
def test_drain_deadline_abandons_stuck_requests_and_exits_0(start_server, tmp_path, owns_threading, client_gone):
    # owns_threading: the stuck handler imported threading first, so threading takes its thread for
    # the main thread and a plain interpreter exit would wait for it. client_gone: the client reset
    # its connection first, so the drain has no connection left to count as abandoned.
    srv = start_server("handler_app:app", env={"FORGE_DRAIN_SECONDS": "0.3", "FORGE_LOOP": "lean"})
    started, release = tmp_path / "started", tmp_path / "release"
    s = connect(srv.port, timeout=30)
    extra = "&import_threading=1" if owns_threading else ""
    s.sendall(build_request("GET", f"/block?started={started}&release={release}&limit=60{extra}"))
    while not started.exists():
        pass
    if client_gone:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST on close
        s.close()
        time.sleep(0.2)
    srv.signal(signal.SIGTERM)
    assert srv.wait(30) == 0
    if not client_gone:
        assert Reader(s).at_eof(timeout=5)
        s.close()
        assert '"abandoned":1' in srv.stderr()


@pytest.mark.parametrize("path", ["/astream", "/import-logging"])
def test_exit_0_after_threading_was_first_imported_by_a_handler(start_server, path):
    # threading imported on a worker thread (asyncio.run for an async body, a lazy import of
    # logging) takes that worker for the main thread; exit then waits for it, so it must end.
    srv = start_server("handler_app:app", env={"FORGE_LOOP": "lean"})
    assert request(srv.port, "GET", path)[0] == 200
    srv.signal(signal.SIGTERM)
    assert srv.wait(15) == 0


def test_lean_loop_does_not_import_asyncio_or_logging(start_server):
    srv = start_server("handler_app:app", env={"FORGE_LOOP": "auto"})
    status, _, data = request(srv.port, "GET", "/modules")
    info = json.loads(data)
    mods = set(info["modules"])
    assert "forge_runtime._loop" in mods
    # Run against a built binary, the app must really be compiled (not a CPython fallback).
    assert info["compiled"] == ("{python}" not in os.environ.get("FORGE_RUNTIME_SERVER_CMD", "{python}"))
    # inspect too in a Nuitka-built binary: forge's SDK patches it for compiled code only on import.
    heavy = ["asyncio", "logging", "http.server", "email", "concurrent.futures", "ssl", "selectors", "threading",
             "inspect"]
    for name in heavy:
        assert name not in mods, name


def test_env_is_passed_through(start_server):
    srv = start_server("handler_app:app", env={"FORGE_SOMETHING": "x"})
    assert json.loads(request(srv.port, "GET", "/env")[2])["FORGE_SOMETHING"] == "x"


# -- async handler ------------------------------------------------------------------------------------


def test_async_handler(start_server):
    srv = start_server("async_app:app")
    assert request(srv.port, "GET", "/")[2] == b"hello from async forge"
    assert json.loads(request(srv.port, "POST", "/echo", body=b"hi")[2]) == {"method": "POST", "body": "hi"}
    s = connect(srv.port)
    r = Reader(s)
    s.sendall(build_request("GET", "/astream?n=3"))
    assert r.read_response()[3] == [b"a0\n", b"a1\n", b"a2\n"]
    s.sendall(build_request("GET", "/sstream"))
    assert r.read_response()[3] == [b"s0\n", b"s1\n"]
    r.close()
    assert request(srv.port, "GET", "/error")[0] == 500
    assert request(srv.port, "GET", "/")[0] == 200
    assert '"loop":"asyncio"' in srv.stderr()


def test_async_handler_sync_stream_that_raises_ends_the_response(start_server):
    """A sync body raising mid-stream (read in the thread pool) ends that response at once: the
    connection closes without the last chunk, the error is logged, and the server keeps serving."""
    srv = start_server("async_app:app")
    started = time.monotonic()
    out = raw_exchange(srv.port, build_request("GET", "/sstream-fail"), timeout=8.0)
    assert time.monotonic() - started < 5, "the response hung after its body raised"
    assert out.startswith(b"HTTP/1.1 200") and b"s0\n" in out
    assert not out.endswith(b"0\r\n\r\n")   # no terminating chunk: the client sees the failure
    assert request(srv.port, "GET", "/")[2] == b"hello from async forge"
    deadline = time.monotonic() + 10   # in a container the log reaches the file through docker, later
    while "sync stream boom" not in srv.stderr() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "sync stream boom" in srv.stderr()


def test_async_handler_concurrency(start_server):
    srv = start_server("async_app:app")
    out = []

    def c():
        out.append(request(srv.port, "GET", "/sleep?s=0.5")[2])

    threads = [threading.Thread(target=c) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert out == [b"slept"] * 20


# -- ASGI ---------------------------------------------------------------------------------------------


def test_asgi_scope_and_lifespan(start_server, tmp_path):
    events = tmp_path / "events"
    srv = start_server("asgi_app:app", env={"FORGE_TEST_EVENTS": str(events)})
    status, _, data = request(srv.port, "GET", "/state")
    assert json.loads(data) == {"greeting": "hello from lifespan"}
    status, _, data = request(srv.port, "POST", "/scope?x=%20y", headers={"X-Test": "1"}, body=b"payload")
    info = json.loads(data)
    assert info["type"] == "http" and info["asgi"]["version"] == "3.0"
    assert info["http_version"] == "1.1" and info["method"] == "POST" and info["scheme"] == "http"
    assert info["path"] == "/scope" and info["raw_path"] == "/scope" and info["query_string"] == "x=%20y"
    assert info["root_path"] == "" and ["x-test", "1"] in info["headers"]
    assert info["client"][0] == "127.0.0.1" and info["server"][1] == srv.port
    assert info["body"] == "payload" and info["more_body"] is False
    s = connect(srv.port)
    r = Reader(s)
    s.sendall(build_request("GET", "/stream"))
    status, h, body, chunks = r.read_response()
    assert h["transfer-encoding"] == "chunked" and chunks == [b"part 0\n", b"part 1\n", b"part 2\n"]
    r.close()
    assert request(srv.port, "GET", "/error")[0] == 500
    srv.assert_alive()
    srv.signal(signal.SIGTERM)
    assert srv.wait() == 0
    assert events.read_text().split() == ["startup-begin", "startup-complete", "shutdown"]


def test_ping_answered_during_slow_lifespan_startup(start_server, tmp_path):
    gate = tmp_path / "gate"
    events = tmp_path / "events"
    srv = start_server(
        "asgi_app:app", env={"FORGE_TEST_STARTUP_GATE": str(gate), "FORGE_TEST_EVENTS": str(events)}
    )  # ready = the ping answered, while startup is still held at the gate
    assert events.read_text().split() == ["startup-begin"]
    # A normal request waits for startup to complete ...
    s = connect(srv.port, timeout=30)
    s.sendall(build_request("GET", "/state"))
    status, _, body = request(srv.port, "GET", "http://ping/", headers={"Host": "ping"})
    assert (status, body) == (200, b"ok")
    assert not gate.exists()
    gate.write_text("open")
    # ... and is then served, with the state startup set up.
    status, _, data, _ = Reader(s).read_response()
    assert json.loads(data) == {"greeting": "hello from lifespan"}
    s.close()


def test_lifespan_startup_failure_exits_nonzero(start_server):
    srv = start_server("asgi_app:app", env={"FORGE_TEST_STARTUP_FAIL": "1"}, ready=False)
    assert srv.wait(30) == 1
    assert "no database" in srv.stderr()


# -- WSGI ---------------------------------------------------------------------------------------------


def test_wsgi_environ_pep3333(start_server):
    srv = start_server("wsgi_app:app")
    status, h, data = request(
        srv.port,
        "POST",
        "/environ/%C3%A9?a=1&b=%20",
        headers={"Host": "example.com:8443", "Content-Type": "text/plain", "X-Multi": "1", "X_Under": "no"},
        body=b"hello wsgi",
    )
    assert status == 200 and h["content-type"] == "application/json"
    env = json.loads(data)
    assert env["REQUEST_METHOD"] == "POST"
    assert env["SCRIPT_NAME"] == ""
    assert env["PATH_INFO"] == "/environ/\u00c3\u00a9"  # decoded bytes as latin-1, per PEP 3333
    assert env["QUERY_STRING"] == "a=1&b=%20"
    assert env["CONTENT_TYPE"] == "text/plain"
    assert env["CONTENT_LENGTH"] == "10"
    assert env["SERVER_NAME"] == "example.com" and env["SERVER_PORT"] == "8443"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["HTTP_HOST"] == "example.com:8443"
    assert env["HTTP_X_MULTI"] == "1"
    assert "HTTP_X_UNDER" not in env
    assert "HTTP_CONTENT_TYPE" not in env and "HTTP_CONTENT_LENGTH" not in env
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["wsgi.version"] == [1, 0]
    assert env["wsgi.url_scheme"] == "http"
    assert env["wsgi.multithread"] is True and env["wsgi.multiprocess"] is False and env["wsgi.run_once"] is False
    assert env["wsgi.errors.has_write"] and env["wsgi.input.has_read"]
    assert env["body"] == "hello wsgi"
    # Native strings everywhere.
    for key, value in env.items():
        if key.isupper():
            assert isinstance(value, str), key


def test_wsgi_responses(start_server):
    srv = start_server("wsgi_app:app")
    s = connect(srv.port)
    r = Reader(s)
    s.sendall(build_request("GET", "/stream"))
    status, h, body, chunks = r.read_response()
    assert h["transfer-encoding"] == "chunked" and body == b"".join(b"line %d\n" % i for i in range(4))
    s.sendall(build_request("GET", "/write"))
    status, h, body, _ = r.read_response()
    assert status == 201 and body == b"via write; and iterable"
    s.sendall(build_request("GET", "/"))
    status, h, body, _ = r.read_response()
    assert body == b"hello from wsgi" and h["content-length"] == "15"
    r.close()
    assert request(srv.port, "GET", "/error")[0] == 500
    srv.assert_alive()


@pytest.mark.parametrize("example,hello", [
    ("hello", b"hello from forge"),
    ("asgi", b"hello from forge (starlette)"),
    ("wsgi", b"hello from forge (bottle)"),
])
def test_examples(start_server, example, hello, monkeypatch):
    __import__({"hello": "json", "asgi": "starlette", "wsgi": "bottle"}[example])  # test extra
    from tests import test_runtime_support as support

    app_dir = os.path.join(os.path.dirname(support.APP_DIR), "..", "examples", example)
    monkeypatch.setattr(support, "APP_DIR", os.path.abspath(app_dir))
    srv = start_server("app:app")
    assert request(srv.port, "GET", "/")[2] == hello
    assert json.loads(request(srv.port, "GET", "/healthz")[2])["ok"] is True
    status, _, data = request(srv.port, "POST", "/echo", body=b'{"a": [1, 2]}', headers={"Content-Type": "application/json"})
    assert status == 200 and json.loads(data)["echo"] == {"a": [1, 2]}


# -- command line ---------------------------------------------------------------------------------


def _cli(*args, env=None):
    import subprocess
    import sys

    from tests.test_runtime_support import APP_DIR

    full = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", "forge_runtime", *args], cwd=APP_DIR, env=full,
                          capture_output=True, text=True, timeout=60)


def test_cli_usage_errors():
    out = _cli()
    assert out.returncode != 0 and "usage" in out.stderr
    out = _cli("handler_app:nope")
    assert out.returncode != 0 and "no attribute" in out.stderr
    out = _cli("async_app:app", env={"FORGE_LOOP": "lean"})
    assert out.returncode != 0 and "FORGE_LOOP=lean" in out.stderr
    out = _cli("handler_app:app", env={"FORGE_MAX_BODY": "lots"})
    assert out.returncode != 0 and "FORGE_MAX_BODY" in out.stderr
    assert "usage" in _cli("--help").stdout


def test_asgi_app_without_lifespan_support(start_server):
    srv = start_server("asgi_nolifespan:app")
    assert request(srv.port, "GET", "/")[2] == b"no lifespan here"
    assert "lifespan_unsupported" in srv.stderr()
    srv.signal(signal.SIGTERM)
    assert srv.wait() == 0
