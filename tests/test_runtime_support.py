"""Fixtures and a raw HTTP client for the runtime tests (no tests in this module).

The server under test is a subprocess started from a command template, so the same test bodies can
run against a forge-built binary instead of `python -m forge_runtime`:

    FORGE_RUNTIME_SERVER_CMD='{python} -m forge_runtime {app}'          (the default)
    FORGE_RUNTIME_SERVER_CMD="bash $PWD/tests/test_runtime_apps/run_built.sh {app_dir} {module} {attr}"
                                     (builds each app with `forge build` once, then execs the binary;
                                      prebuild with `bash tests/test_runtime_apps/run_built.sh --prebuild`)

Placeholders: {python} this interpreter, {app} "module:attr", {module}, {attr}, {app_dir} the
directory holding the test apps (also the working directory). The server gets PORT and the test's
FORGE_* variables in its environment and must answer `GET http://ping/` once it is up.
"""

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time

import pytest

APP_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "test_runtime_apps")
DEFAULT_CMD = "{python} -m forge_runtime {app}"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    def __init__(self, app, env=None, cmd=None, tmp_path=None):
        self.app = app
        module, _, attr = app.partition(":")
        template = cmd or os.environ.get("FORGE_RUNTIME_SERVER_CMD") or DEFAULT_CMD
        argv = shlex.split(
            template.format(python=sys.executable, app=app, module=module, attr=attr or "app", app_dir=APP_DIR)
        )
        self.port = free_port()
        full_env = dict(os.environ)
        full_env.update({"PORT": str(self.port), "PYTHONUNBUFFERED": "1"})
        full_env.update(env or {})
        out_dir = tmp_path or "/tmp"
        tag = f"{module}-{self.port}"
        self.stdout_path = os.path.join(out_dir, f"{tag}.stdout")
        self.stderr_path = os.path.join(out_dir, f"{tag}.stderr")
        self._out = open(self.stdout_path, "wb")
        self._err = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(argv, cwd=APP_DIR, env=full_env, stdout=self._out, stderr=self._err)
        self.base_url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout=30.0):
        """Until the ping probe answers 200 (the server is listening)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.stderr()}")
            try:
                status, _, _ = request(self.port, "GET", "http://ping/", headers={"Host": "ping"}, timeout=2)
                if status == 200:
                    return self
            except OSError:
                time.sleep(0.01)
        raise RuntimeError(f"server not ready after {timeout}s: {self.stderr()}")

    def stdout(self):
        with open(self.stdout_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stderr(self):
        with open(self.stderr_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def access_log(self):
        return [json.loads(line) for line in self.stdout().splitlines() if line.strip()]

    def signal(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)

    def wait(self, timeout=30.0):
        return self.proc.wait(timeout)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._out.close()
        self._err.close()

    def assert_alive(self):
        assert self.proc.poll() is None, f"server died: {self.stderr()}"
        status, _, body = request(self.port, "GET", "/")
        assert status == 200, (status, body)


@pytest.fixture
def start_server(tmp_path):
    """Factory: start_server("handler_app:app", env={...}) -> a ready ServerProcess, stopped at teardown."""
    started = []

    def start(app="handler_app:app", env=None, ready=True):
        srv = ServerProcess(app, env=env, tmp_path=str(tmp_path))
        started.append(srv)
        return srv.wait_ready() if ready else srv

    yield start
    for srv in started:
        srv.stop()


# -- a small, strict HTTP/1.1 client over raw sockets --------------------------------------------------


def connect(port, timeout=10.0):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def build_request(method, target, headers=None, body=b""):
    h = {"Host": "test"}
    h.update(headers or {})
    if body and "Content-Length" not in h and "Transfer-Encoding" not in h:
        h["Content-Length"] = str(len(body))
    lines = [f"{method} {target} HTTP/1.1"] + [f"{k}: {v}" for k, v in h.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class Reader:
    """Reads successive responses from one socket (pipelining/keep-alive safe)."""

    def __init__(self, sock):
        self.sock = sock
        self.f = sock.makefile("rb")

    def read_response(self, method="GET"):
        """-> (status, headers dict (lower-case names; repeated joined by ', '), body bytes, chunks)."""
        line = self.f.readline(65537)
        if not line:
            raise ConnectionError("connection closed before a response")
        parts = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
        proto, status = parts[0], parts[1]
        assert proto == "HTTP/1.1", line
        headers = {}
        while True:
            h = self.f.readline(65537)
            if h in (b"\r\n", b""):
                break
            name, _, value = h.decode("latin-1").partition(":")
            name = name.strip().lower()
            value = value.strip()
            headers[name] = headers[name] + ", " + value if name in headers else value
        status = int(status)
        chunks = []
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            return status, headers, b"", chunks
        if headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size_line = self.f.readline(1024)
                if not size_line:
                    raise ConnectionError("truncated chunked body")
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    while self.f.readline(65537) not in (b"\r\n", b""):
                        pass
                    break
                data = self.f.read(size)
                if len(data) != size or self.f.read(2) != b"\r\n":
                    raise ConnectionError("truncated chunk")
                chunks.append(data)
            return status, headers, b"".join(chunks), chunks
        if "content-length" in headers:
            n = int(headers["content-length"])
            body = self.f.read(n)
            if len(body) != n:
                raise ConnectionError("truncated body")
            return status, headers, body, chunks
        return status, headers, self.f.read(), chunks

    def at_eof(self, timeout=10.0):
        """True if the server closes the connection (reads nothing more) within `timeout`."""
        self.sock.settimeout(timeout)
        try:
            return self.f.read(1) == b""
        except (ConnectionResetError, BrokenPipeError):
            return True

    def close(self):
        self.f.close()
        self.sock.close()


def request(port, method, target, headers=None, body=b"", timeout=10.0):
    s = connect(port, timeout)
    try:
        s.sendall(build_request(method, target, headers, body))
        r = Reader(s)
        status, h, data, _ = r.read_response(method)
        return status, h, data
    finally:
        s.close()


def raw_exchange(port, data, timeout=10.0):
    """Send raw bytes; return everything the server sends until it closes (or timeout)."""
    s = connect(port, timeout)
    try:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        out = b""
        while True:
            try:
                part = s.recv(65536)
            except ConnectionResetError:
                break
            except socket.timeout:
                break
            if not part:
                break
            out += part
        return out
    finally:
        s.close()
