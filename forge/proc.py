"""Running long child processes (make, Nuitka) so that they die with forge."""

from __future__ import annotations

import os
import signal
import subprocess


def run_killable(cmd: list[str], stdout, env: dict | None = None, cwd=None) -> subprocess.CompletedProcess:
    """Like subprocess.run(stderr=STDOUT), but the child gets its own process group, and if forge is
    interrupted (Ctrl-C, SIGTERM) the whole group is killed: no orphaned `make -j` keeps building."""
    proc = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                            start_new_session=True)
    try:
        proc.wait()
    except BaseException:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except ProcessLookupError:
            pass  # already gone
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode)
