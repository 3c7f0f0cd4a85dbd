"""Small helpers shared by tests: run the real CLI as a user would."""

from __future__ import annotations

import os
import subprocess
import sys


def run_forge(*args: str, env: dict | None = None, cwd=None, timeout: float = 3600) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "forge", *map(str, args)], capture_output=True,
                          text=True, env=full_env, cwd=cwd, timeout=timeout)
