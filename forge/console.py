"""Terminal output: rich progress bars on a terminal, plain timestamped lines in CI logs."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

# Everything human-facing goes to stderr so stdout stays clean for --json and `forge toolchain path`.
err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)


def interactive() -> bool:
    return err.is_terminal and not os.environ.get("CI")


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
               TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=False) as progress:
        task = progress.add_task("", total=total)
        yield Steps(progress, task, total)
