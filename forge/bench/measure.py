"""One measurement run of one variant: as a process on the host, or as a container.

Process run (the binary or interpreter started directly on this machine, no container):
  cold start  time.perf_counter_ns() just before Popen -> the first HTTP 200 on 127.0.0.1:PORT;
              the probe sends `GET /` on a new connection and retries at once (200 us pause) on
              refusal, reset or an empty answer.
  idle RSS    right after that first 200: VmRSS, and RssAnon (its private part), from
              /proc/<pid>/status, summed over the process and its descendants (PyInstaller
              --onefile and staticx run the app as a grandchild of two small bootloader processes;
              all three are what the variant costs).
  throughput  wrk on loopback for a short bounded run (`wrk -t1 -c16 -dD`), requests/s.
  peak RSS    VmHWM summed the same way, read after the wrk run.

Container run (the image in the Docker engine):
  The container is created first (docker create: ports published on 127.0.0.1, not timed); the
  cold start is time.perf_counter_ns() just before the Engine API start call -> the first HTTP 200
  through the published port. Idle RSS: VmRSS of the container's processes (from the engine's
  `top`, host PIDs, read in /proc), and the cgroup's memory usage beside it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from forge import errors

PROBE_PAUSE_S = 0.0002
START_TIMEOUT_S = 60.0
CONTAINER_PORT = 8080
# Every forge_runtime variant runs with the access log off: a log line per request would measure the
# log pipe (or the Docker log driver), not the server. The floor ignores it.
BENCH_ENV = {"FORGE_ACCESS_LOG": "0"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_status(port: int, path: str = "/", timeout: float = 5.0) -> int:
    """One `GET path` on a new connection -> the status code (0 for an empty answer). Raises OSError."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while b"\r\n" not in data:
            part = s.recv(4096)
            if not part:
                break
            data += part
    try:
        return int(data.split(b" ", 2)[1]) if data else 0
    except (IndexError, ValueError):
        return 0


def wait_first_200(port: int, alive, timeout: float = START_TIMEOUT_S) -> int:
    """Poll until `GET /` answers 200; returns perf_counter_ns() at that moment. `alive()` returning a
    string aborts with that reason (the server exited)."""
    end = time.monotonic() + timeout
    while True:
        try:
            if get_status(port) == 200:
                return time.perf_counter_ns()
        except OSError:
            pass
        why = alive()
        if why:
            raise errors.BenchFailed(why)
        if time.monotonic() > end:
            raise errors.BenchFailed(f"nothing answered 200 on 127.0.0.1:{port} within {timeout:.0f}s")
        time.sleep(PROBE_PAUSE_S)


# --- /proc -------------------------------------------------------------------------------------------
def descendants(pid: int) -> list[int]:
    """pid and every process below it (from /proc/*/stat)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def status_kb(pids: list[int], key: str) -> int:
    """Sum of a /proc/<pid>/status field (VmRSS, VmHWM) in kB over pids (gone ones count 0)."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith(key + ":"):
                    total += int(line.split()[1])
                    break
        except OSError:
            pass
    return total


def cgroup_memory_kb(pid: int) -> int | None:
    """The memory usage of pid's cgroup (v2 memory.current, v1 memory.usage_in_bytes), in kB."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            f = Path("/sys/fs/cgroup") / path.lstrip("/") / "memory.current"
        elif "memory" in controllers.split(","):
            f = Path("/sys/fs/cgroup/memory") / path.lstrip("/") / "memory.usage_in_bytes"
        else:
            continue
        with contextlib.suppress(OSError, ValueError):
            return int(f.read_text()) // 1024
    return None


# --- wrk -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WrkSettings:
    seconds: float = 3.0
    threads: int = 1
    connections: int = 16

    def argv(self, port: int) -> list[str]:
        return ["wrk", f"-t{self.threads}", f"-c{self.connections}", f"-d{self.seconds:g}s", "--timeout", "5s",
                f"http://127.0.0.1:{port}/"]


def wrk_path() -> str | None:
    return shutil.which("wrk")


def run_wrk(port: int, settings: WrkSettings) -> dict:
    """wrk's requests/s and error counts for one bounded run."""
    proc = subprocess.run(settings.argv(port), capture_output=True, text=True,
                          timeout=settings.seconds + 30)
    m = re.search(r"Requests/sec:\s*([\d.]+)", proc.stdout)
    if proc.returncode != 0 or not m:
        raise errors.BenchFailed(f"wrk failed (exit {proc.returncode}): {proc.stdout[-500:]}{proc.stderr[-500:]}")
    non2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", proc.stdout)
    sock = re.search(r"Socket errors:(.*)", proc.stdout)
    return {"rps": float(m.group(1)), "non_2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": sock.group(1).strip() if sock else ""}


# --- process runs ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProcessSpec:
    argv: tuple[str, ...]
    cwd: Path | None = None
    env: dict = field(default_factory=dict)   # added to a clean environment (PATH, HOME, PORT, BENCH_ENV)


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the whole process group (bootloaders and their children), SIGKILL if it lingers."""
    if proc.poll() is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # grandchildren that outlived their parent


def process_env(spec: ProcessSpec, port: int) -> dict:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/root"),
           "LANG": "C.UTF-8", "TMPDIR": os.environ.get("TMPDIR", "/tmp")}
    env.update(BENCH_ENV)
    env.update(spec.env)
    env["PORT"] = str(port)
    return env


def run_process(spec: ProcessSpec, wrk: WrkSettings | None) -> dict:
    """Start, time to first 200, idle RSS, optional wrk + peak RSS, stop. Returns the figures."""
    port = free_port()
    env = process_env(spec, port)
    with tempfile.TemporaryFile() as errlog:   # a file, not a pipe: a chatty server never blocks on it
        t0 = time.perf_counter_ns()
        proc = subprocess.Popen(list(spec.argv), cwd=spec.cwd, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=errlog, start_new_session=True)
        try:
            def alive():
                if proc.poll() is None:
                    return None
                errlog.seek(0)
                err = errlog.read().decode(errors="replace")[-800:]
                return f"{spec.argv[0]} exited with {proc.returncode} before answering: {err}"
            t1 = wait_first_200(port, alive)
            pids = descendants(proc.pid)
            out = {"process_cold_start_ms": (t1 - t0) / 1e6, "idle_rss_kb": status_kb(pids, "VmRSS"),
                   "idle_private_kb": status_kb(pids, "RssAnon")}
            if wrk is not None:
                w = run_wrk(port, wrk)
                out["throughput_rps"] = w["rps"]
                out["wrk_non_2xx"] = w["non_2xx"]
                out["peak_rss_kb"] = status_kb(descendants(proc.pid), "VmHWM")
            return out
        finally:
            _stop(proc)


# --- container runs ------------------------------------------------------------------------------------------
def run_container(client, image: str) -> dict:
    """docker create (untimed), then start -> first 200 through the published port; idle RSS."""
    port = free_port()
    t_create = time.perf_counter_ns()
    container = client.containers.create(image, detach=True, environment=dict(BENCH_ENV),
                                         ports={f"{CONTAINER_PORT}/tcp": ("127.0.0.1", port)},
                                         labels={"forge.bench": "1"})
    create_ms = (time.perf_counter_ns() - t_create) / 1e6
    try:
        t0 = time.perf_counter_ns()
        container.start()

        def alive():
            container.reload()
            if container.status in ("exited", "dead"):
                logs = container.logs(tail=20).decode(errors="replace")
                return f"container of {image} exited before answering: {logs}"
            return None
        t1 = wait_first_200(port, alive)
        out = {"container_cold_start_ms": (t1 - t0) / 1e6, "container_create_ms": create_ms}
        top = client.api.top(container.id, ps_args="-o pid")
        pids = [int(row[0]) for row in top.get("Processes") or []]
        out["container_idle_rss_kb"] = status_kb(pids, "VmRSS")
        cg = cgroup_memory_kb(pids[0]) if pids else None
        if cg is not None:
            out["container_cgroup_memory_kb"] = cg
        return out
    finally:
        with contextlib.suppress(Exception):
            container.stop(timeout=5)
        with contextlib.suppress(Exception):
            container.remove(force=True)
