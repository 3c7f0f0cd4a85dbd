"""The on-disk cache: where it lives, a cross-process lock, and atomic publication of entries."""

from __future__ import annotations

import contextlib
import hashlib
import fcntl
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from forge.fsio import atomic_dir as staging_dir  # noqa: F401  (a cache entry appears whole or not at all)
from forge.fsio import atomic_write_bytes  # noqa: F401


def cache_root() -> Path:
    """`FORGE_CACHE_DIR`, else `$XDG_CACHE_HOME/forge`, else `~/.cache/forge`."""
    env = os.environ.get("FORGE_CACHE_DIR")
    if env:
        return Path(env).expanduser().resolve()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return (base / "forge").resolve()


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive lock shared by every forge process on this machine; waits for the holder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks (tarballs and modules are large)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def remove_stale_staging(final: Path) -> None:
    """Drop scratch directories of `final` left by killed processes (callers hold its lock)."""
    if final.parent.is_dir():
        for p in final.parent.glob(f".{final.name}.tmp-*"):
            shutil.rmtree(p, ignore_errors=True)
