"""Start the linked binary once before the build is called good (issue 13).

A green build that crashes at start is worse than a red one, so after the link `forge build` runs
what it built, as close to production as the host allows:

- where a Docker engine answers, the image itself: read-only root, user 65532, no network. A
  served workload is ready when `GET http://ping/` (answered by forge_runtime itself, before the
  app sees it) returns 200; the request is made inside the container's own network namespace by the
  binary's probe mode (`FORGE_PROBE=1`, in the generated entry), started with `docker exec`.
- otherwise, the binary directly, in a throwaway directory, with PORT on loopback; forge sends the
  ping itself.

A program (no `app`) may need arguments or input, so it is started in the generated entry's check
mode (`FORGE_CHECK_IMPORTS=1`): it imports what the entry module imports at its top, then exits 0.

A crash (or no answer within the timeout) is StartupCheckFailed: the last lines the binary printed
and the likely fix. A passing check is recorded in the build cache, keyed by what was checked, so
a rebuild of an unchanged workload does not start it again.
"""

from __future__ import annotations

import collections
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from forge import errors

PROBE_ENV = "FORGE_PROBE"              # the generated entry pings the server on 127.0.0.1:$PORT
CHECK_IMPORTS_ENV = "FORGE_CHECK_IMPORTS"   # a program's generated entry: import, then exit 0
DEFAULT_TIMEOUT = 60.0
_TAIL_LINES = 25


@dataclass(frozen=True)
class Verification:
    verified: bool
    method: str                    # "docker", "direct", "skipped"
    start_seconds: float | None    # exec -> first answered ping (served), or -> exit 0 (program)
    cached: bool = False

    def summary(self) -> dict:
        return {"verified": self.verified, "verify_method": self.method,
                "start_seconds": None if self.start_seconds is None else round(self.start_seconds, 4),
                "verify_cached": self.cached}


def _timeout() -> float:
    raw = os.environ.get("FORGE_VERIFY_TIMEOUT", "")
    try:
        return float(raw) if raw.strip() else DEFAULT_TIMEOUT
    except ValueError:
        raise errors.ConfigError(f"FORGE_VERIFY_TIMEOUT must be a number of seconds, got {raw!r}.") from None


def _method() -> str:
    """auto (Docker if an engine answers, else direct), or forced with FORGE_VERIFY=docker|direct."""
    want = os.environ.get("FORGE_VERIFY", "auto").strip().lower() or "auto"
    if want not in ("auto", "docker", "direct"):
        raise errors.ConfigError(f"FORGE_VERIFY must be auto, docker or direct, not {want!r}.")
    if want != "auto":
        return want
    try:
        from forge.publish.daemon import docker_client
        docker_client().close()
        return "docker"
    except (errors.DockerUnavailable, ImportError):
        return "direct"


def ping(port: int, host: str = "127.0.0.1", timeout: float = 2.0) -> bool:
    """True if forge_runtime answers `GET http://ping/` with 200 on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: ping\r\nConnection: close\r\n\r\n")
            return s.recv(64).startswith((b"HTTP/1.1 200", b"HTTP/1.0 200"))
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- what went wrong, and the fix ---------------------------------------------------------------------
def diagnose(output: str, builtin_modules: set[str] = frozenset(), excluded: tuple[str, ...] = ()) -> str:
    """The fix for the most likely cause, read from the binary's output."""
    missing = re.findall(r"(?:ModuleNotFoundError|ImportError): No module named '?([\w.]+)'?", output)
    if missing:
        name = missing[-1]
        top = name.split(".")[0]
        hit = [e for e in excluded if name == e or name.startswith(e + ".")]
        if hit:
            return (f"`{name}` is imported at start but [tool.forge] exclude drops {hit[0]!r}: remove it "
                    f"from exclude.")
        if name in builtin_modules or top in builtin_modules:
            return (f"`{name}` is a built-in C module that the lean link left out (nothing forge could "
                    f"see imports it): add it to [tool.forge] include = [\"{name}\"], or set "
                    f"builtins = \"all\".")
        return (f"`{name}` is imported by a name computed at run time, so forge did not see it: add it "
                f"to [tool.forge] include = [\"{name}\"] (or, if no installed distribution provides it, "
                f"add the one that does to the dependencies).")
    if re.search(r"FileNotFoundError|No such file or directory", output):
        return ("a file the program reads at start is not in the image: keep it inside a package of "
                "the project or a dependency (package data is included), and check that [tool.forge] "
                "exclude does not drop it.")
    if re.search(r"Read-only file system|Permission denied", output):
        return ("the program writes at start, but the image's root is read-only and it runs as user "
                "65532: write under /tmp (or a mounted volume) instead.")
    return ("fix the error it shows; it happens while the workload starts, before it serves "
            "anything. If the check itself is wrong for this workload (it needs a database or a "
            "secret to start), build with --no-verify.")


def _fail(what: str, how: str, output: str, builtin_modules, excluded, log: Path | None) -> None:
    lines = [line for line in output.splitlines() if line.strip()]
    tail = "\n".join("    " + line for line in lines[-_TAIL_LINES:]) or "    (no output)"
    where = f"\nFull output: {log}" if log else ""
    raise errors.StartupCheckFailed(
        f"the binary forge built {what} ({how}), so the build is not good and nothing was "
        f"written. Its last lines:\n{tail}{where}\nFix: {diagnose(output, builtin_modules, excluded)}")


def _save_output(log: Path | None, output: str) -> None:
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(output)


# --- the binary itself, in a throwaway directory -----------------------------------------------------
def _run_direct(app_dir: Path, binary_name: str, served: bool, timeout: float) -> tuple[bool, float, str, str]:
    """(ok, seconds, output, what failed)."""
    with tempfile.TemporaryDirectory(prefix="forge-verify-") as tmp:
        root = Path(tmp) / "app"
        shutil.copytree(app_dir, root, symlinks=True)
        port = _free_port()
        env = {"PORT": str(port), "FORGE_HOST": "127.0.0.1", "FORGE_ACCESS_LOG": "0",
               "HOME": tmp, "TMPDIR": tmp, "LANG": "C.UTF-8"}
        if not served:
            env[CHECK_IMPORTS_ENV] = "1"
        started = time.monotonic()
        proc = subprocess.Popen([str(root / binary_name)], cwd=tmp, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        out: collections.deque[bytes] = collections.deque(maxlen=400)
        reader = threading.Thread(target=lambda: out.extend(iter(proc.stdout.readline, b"")), daemon=True)
        reader.start()
        ok, what = False, ""
        try:
            deadline = started + timeout
            while True:
                code = proc.poll()
                if not served and code is not None:
                    ok, what = code == 0, f"exited with status {code} in its import check"
                    break
                if served and code is not None:
                    what = f"exited with status {code} before it answered"
                    break
                if served and ping(port):
                    ok = True
                    break
                if time.monotonic() > deadline:
                    what = f"did not {'answer GET http://ping/' if served else 'finish its import check'} within {timeout:.0f} s"
                    break
                time.sleep(0.01)
            seconds = time.monotonic() - started
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, 9)
                    proc.wait()
            reader.join(timeout=5)
        return ok, seconds, b"".join(out).decode(errors="replace"), what


# --- the image, in Docker: read-only, 65532, no network ----------------------------------------------
def _run_docker(image, entrypoint: str, served: bool, timeout: float, name: str) -> tuple[bool, float, str, str]:
    from docker.errors import APIError, NotFound

    from forge.publish.daemon import DaemonPublisher, docker_client

    client = docker_client()
    tag = f"forge-verify/{name}:{image.digest.split(':')[1][:16]}"
    DaemonPublisher(tag, client).publish(image)
    env = {"FORGE_ACCESS_LOG": "0"}
    if not served:
        env[CHECK_IMPORTS_ENV] = "1"
    container = None
    try:
        started = time.monotonic()
        container = client.containers.run(tag, detach=True, read_only=True, user="65532:65532",
                                          network_mode="none", environment=env)
        ok, what = False, ""
        deadline = started + timeout
        while True:
            container.reload()
            status = container.status
            if status in ("exited", "dead"):
                code = container.wait(timeout=10)["StatusCode"]
                if served:
                    what = f"exited with status {code} before it answered"
                else:
                    ok, what = code == 0, f"exited with status {code} in its import check"
                break
            if served and status == "running":
                try:
                    probe = container.exec_run([entrypoint], environment={PROBE_ENV: "1"})
                    if probe.exit_code == 0:
                        ok = True
                        break
                except APIError:
                    pass  # the container stopped between reload and exec: the next loop sees it
            if time.monotonic() > deadline:
                what = (f"did not {'answer GET http://ping/' if served else 'finish its import check'} "
                        f"within {timeout:.0f} s")
                break
            time.sleep(0.02)
        seconds = time.monotonic() - started
        output = container.logs(stdout=True, stderr=True).decode(errors="replace")
        return ok, seconds, output, what
    finally:
        if container is not None:
            try:
                container.remove(force=True)
            except (APIError, NotFound):
                pass
        try:
            client.images.remove(tag, noprune=False)
        except (APIError, NotFound):
            pass
        client.close()


def verify(*, app_dir: Path, binary_name: str, served: bool, name: str, image=None,
           record_dir: Path | None = None, builtin_modules=frozenset(), excluded: tuple[str, ...] = (),
           log: Path | None = None) -> Verification:
    """Start the build once; StartupCheckFailed if it crashes or does not answer in time."""
    method = _method() if image is not None else "direct"
    subject = image.digest if method == "docker" else "direct"
    record = None
    if record_dir is not None:
        record = record_dir / f"verified-{method}-{subject.replace(':', '-')[:40]}.json"
        if record.is_file():
            seen = json.loads(record.read_text())
            return Verification(True, method, seen.get("start_seconds"), cached=True)
    timeout = _timeout()
    if method == "docker":
        ok, seconds, output, what = _run_docker(image, f"/app/{binary_name}", served, timeout, name)
        how = "its image, read-only, as 65532, without network"
    else:
        ok, seconds, output, what = _run_direct(app_dir, binary_name, served, timeout)
        how = "the binary alone, in a throwaway directory, PORT on loopback"
    _save_output(log, output)
    if not ok:
        _fail(what, how, output, set(builtin_modules), excluded, log)
    result = Verification(True, method, seconds)
    if record is not None:
        try:
            record.write_text(json.dumps({"start_seconds": seconds, "method": method}))
        except OSError:
            pass  # only a shortcut for the next build
    return result
