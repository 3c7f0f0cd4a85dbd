"""Small helpers shared by tests: run the real CLI as a user would."""

from __future__ import annotations

import os
import subprocess
import sys


def run_forge(*args: str, env: dict | None = None, cwd=None, timeout: float = 3600) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "forge", *map(str, args)], capture_output=True,
                          text=True, env=full_env, cwd=cwd, timeout=timeout)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 20.0):
    """GET url until something answers (a requests.Response), for at most `timeout` seconds."""
    import time

    import requests

    deadline = time.monotonic() + timeout
    while True:
        try:
            return requests.get(url, timeout=2)
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
