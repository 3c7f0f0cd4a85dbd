"""Atomic publication of files and directories: write beside the target, then rename into place.

The one helper forge uses for every output that must appear whole or not at all (cache entries, image
layouts, archives, build outputs): on any exception, KeyboardInterrupt included, the scratch path is
removed, so a failed or interrupted job never leaves something at `final` that looks complete.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with renameat2(RENAME_EXCHANGE); False where it is unsupported."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


@contextlib.contextmanager
def atomic_dir(final: Path, check: Callable[[Path], None] | None = None, mode: int | None = None) -> Iterator[Path]:
    """A scratch directory beside `final` (named `.NAME.tmp-*`) that replaces it when the block succeeds.

    An existing non-empty `final` is swapped out in one step (renameat2 RENAME_EXCHANGE), so readers
    see the old tree or the new one, never a mix. `check`, if given, is called on an existing `final`
    just before the swap (is it still ours?); `mode` is applied to the new directory.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        yield tmp
        if mode is not None:
            os.chmod(tmp, mode)
        if final.is_dir() and not final.is_symlink() and any(final.iterdir()):
            if check is not None:
                check(final)
            if _exchange(tmp, final):
                shutil.rmtree(tmp)       # tmp now holds the old tree
                return
            old = final.parent / f".{final.name}.old-{os.getpid()}"
            os.rename(final, old)
            os.rename(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
            return
        if final.is_symlink() or (final.exists() and not final.is_dir()):
            if check is not None:
                check(final)
            final.unlink()
        os.rename(tmp, final)            # absent, or an empty directory (rename replaces it)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def atomic_file(final: Path, check: Callable[[Path], None] | None = None, mode: int | None = None) -> Iterator[Path]:
    """A scratch file path beside `final` that replaces it (os.replace) when the block succeeds."""
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.tmp-", dir=final.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if mode is not None:
            os.chmod(tmp, mode)
        if check is not None and final.exists():
            check(final)
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` whole or not at all."""
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)


def link_or_copy(src: Path, dst: Path) -> None:
    """A file or tree of files that nothing modifies in place (cache entries): hard links where
    the file system allows (thousands of small .pyc files), copies where it does not."""
    def link(a, b):
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)
    if src.is_dir():
        shutil.copytree(src, dst, copy_function=link)
    else:
        link(src, dst)
