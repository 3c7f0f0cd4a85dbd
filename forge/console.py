"""Terminal output: rich progress bars on a terminal, plain timestamped lines in CI logs."""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                           TimeElapsedColumn)

# Everything human-facing goes to stderr so stdout stays clean for --json and `forge toolchain path`.
err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)


# False under --json: no live lines on the terminal (the plain per-step lines still go to stderr).
live = True


def interactive() -> bool:
    return live and err.is_terminal and not os.environ.get("CI")


def info(msg: str) -> None:
    err.print(f"[bold cyan]forge[/] {msg}")


def warn(msg: str) -> None:
    err.print(f"[bold yellow]warning[/] {msg}")


class Steps:
    """A progress bar over named steps; in CI it prints one line per step with its duration."""

    def __init__(self, progress: Progress | None, task, total: int):
        self._progress, self._task, self._total, self._done = progress, task, total, 0

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        start = time.monotonic()
        if self._progress is not None:
            self._progress.update(self._task, description=name)
        else:
            print(f"[forge] {self._done + 1}/{self._total} {name} ...", file=sys.stderr, flush=True)
        yield
        self._done += 1
        if self._progress is not None:
            self._progress.advance(self._task)
        else:
            print(f"[forge] {name} done in {time.monotonic() - start:.1f}s", file=sys.stderr, flush=True)


@contextmanager
def steps(title: str, total: int) -> Iterator[Steps]:
    if not interactive():
        print(f"[forge] {title}", file=sys.stderr, flush=True)
        yield Steps(None, None, total)
        return
    columns = (SpinnerColumn(), TextColumn(f"[bold]{title}[/] {{task.description}}"), BarColumn(),
               MofNCompleteColumn(), TimeElapsedColumn())
    global _progress
    with Progress(*columns, console=err, transient=False) as progress:
        task = progress.add_task("", total=total)
        _progress = progress
        try:
            yield Steps(progress, task, total)
        finally:
            _progress = None


_progress: Progress | None = None   # the live steps bar, for follow_nuitka's line under it

# Nuitka's --show-progress lines: a module count, then its later phases.
_NUITKA_MODULE = re.compile(rb"Optimizing module '([^']+)', (\d+) more modules to go")
_NUITKA_PHASES = ((b"Generating source code for C", "generating C"),
                  (b"Running data composer", "constants"),
                  (b"Running C compilation via Scons", "C compile"),
                  (b"Backend linking", "link"))


def _nuitka_state(chunk: bytes, state: dict) -> None:
    for line in chunk.splitlines():
        if line.startswith(b"Nuitka") and b"PASS " in line and line.rstrip().endswith(b":"):
            state["done"] = 0
            state["pass"] = state.get("pass", 0) + 1
        m = _NUITKA_MODULE.search(line)
        if m:
            state["done"] = state.get("done", 0) + 1
            state["total"] = max(state.get("total", 0), state["done"] + int(m.group(2)))
            state["module"] = m.group(1).decode(errors="replace")
            continue
        for marker, phase in _NUITKA_PHASES:
            if marker in line:
                state["phase"] = phase


def nuitka_line(state: dict) -> str:
    """`Nuitka: 312/905 modules (pass 1) django.db.models`, or the phase after optimising."""
    if state.get("phase"):
        return f"Nuitka: {state['phase']} ({state.get('total', 0)} modules)"
    if state.get("total"):
        return (f"Nuitka: {state['done']}/{state['total']} modules (pass {state.get('pass', 1)}) "
                f"{state.get('module', '')}")
    return "Nuitka: starting"


@contextmanager
def follow_nuitka(log) -> Iterator[None]:
    """While Nuitka runs with stdout in `log`: a live line under the steps bar with the module count
    and the elapsed time (a terminal only; nothing under --json or in CI)."""
    progress = _progress
    if progress is None:
        yield
        return
    import threading

    stop = threading.Event()
    task = progress.add_task("Nuitka: starting", total=None)
    start = log.stat().st_size if log.exists() else 0

    def follow() -> None:
        state: dict = {}
        with open(log, "rb") as fh:
            fh.seek(start)
            rest = b""
            while True:
                chunk = fh.read()
                if chunk:
                    rest += chunk
                    head, _, rest = rest.rpartition(b"\n")
                    _nuitka_state(head, state)
                    progress.update(task, description=nuitka_line(state),
                                    total=state.get("total") or None, completed=state.get("done", 0))
                elif stop.is_set():
                    return
                else:
                    stop.wait(0.2)

    t = threading.Thread(target=follow, daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join(timeout=2)
        progress.remove_task(task)
