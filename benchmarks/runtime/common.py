"""Shared helpers for the runtime benchmarks: server command lines, readiness, medians."""

import os
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PY = sys.executable


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def have(module):
    try:
        __import__(module)
        return True
    except ImportError:
        return False


def configs(include_uvicorn=True):
    """name -> (argv template with {port}, extra env). Only what is installed is returned."""
    fr = [PY, "-m", "forge_runtime"]
    out = {
        "forge handler (lean loop)": (fr + ["bench_apps:handler"], {}),
        "forge handler (asyncio)": (fr + ["bench_apps:handler"], {"FORGE_LOOP": "asyncio"}),
        "forge async handler (asyncio)": (fr + ["bench_apps:async_handler"], {}),
        "forge WSGI (lean loop)": (fr + ["bench_apps:wsgi"], {}),
        "forge ASGI (asyncio)": (fr + ["bench_apps:asgi"], {}),
    }
    # Without site (python -S): what a compiled binary does not run either. The venv's site alone
    # imports re, urllib, pathlib, ... for the editable install's finder.
    nosite = [PY, "-S", "-c",
              "import sys; sys.path[:0] = [%r, %r]; from forge_runtime.__main__ import main; main(sys.argv[1:])"
              % (runtime_link_dir(), HERE)]
    out["forge handler (lean loop), python -S"] = (nosite + ["bench_apps:handler"], {})
    out["forge ASGI (asyncio), python -S"] = (nosite + ["bench_apps:asgi"], {})
    binary = os.environ.get("FORGE_BENCH_BINARY")
    if binary:  # e.g. dist/hello/app from `forge build examples/hello` (GET / is the same hello)
        out["forge-built binary (examples/hello)"] = ([binary], {})
    if include_uvicorn and have("uvicorn"):
        uv = [PY, "-m", "uvicorn", "bench_apps:asgi", "--port", "{port}", "--log-level", "warning", "--no-access-log"]
        out["uvicorn ASGI (h11, asyncio)"] = (uv + ["--http", "h11", "--loop", "asyncio"], {})
        if have("httptools"):
            out["uvicorn ASGI (httptools, asyncio)"] = (uv + ["--http", "httptools", "--loop", "asyncio"], {})
            if have("uvloop"):
                out["uvicorn ASGI (httptools, uvloop)"] = (uv + ["--http", "httptools", "--loop", "uvloop"], {})
    return out


def runtime_link_dir():
    """A directory where `forge_runtime` resolves to runtime/ without the editable finder."""
    import tempfile

    d = os.path.join(tempfile.gettempdir(), "forge-runtime-bench-path")
    os.makedirs(d, exist_ok=True)
    link = os.path.join(d, "forge_runtime")
    if not os.path.islink(link):
        os.symlink(os.path.join(os.path.dirname(os.path.dirname(HERE)), "runtime"), link)
    return d


def server_env(port, extra):
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # a deployed binary compiles nothing at start: use .pyc
    env.update({"PORT": str(port), "FORGE_ACCESS_LOG": "0"})
    env.update(extra)
    return env


def start(argv, extra, port):
    argv = [a.replace("{port}", str(port)) for a in argv]
    return subprocess.Popen(argv, cwd=HERE, env=server_env(port, extra),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def get_once(port, path="/", host="bench"):
    """One GET on a new connection -> status (raises OSError while nothing listens)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while b"\r\n" not in data:
            part = s.recv(4096)
            if not part:
                break
            data += part
    return int(data.split(b" ", 2)[1]) if data else 0


def wait_ready(proc, port, timeout=30.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if get_once(port) == 200:
                return
        except OSError:
            time.sleep(0.005)
    raise RuntimeError("server not ready")


def stop(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def machine_line():
    import platform

    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        load = "load average %.1f at the end" % os.getloadavg()[0]
    except OSError:
        load = "load unknown"
    return (f"CPython {platform.python_version()}, {platform.system()} {platform.machine()}, {os.cpu_count()} CPUs ({cpu}), "
            f"shared with other builds ({load}); loopback")
