"""The C compiler the SDK (and every native build) uses: Debian's musl-gcc behind a small wrapper.

Why musl-gcc and not `zig cc`: see docs/sdk.md ("Compiler"). The wrapper fixes two things CPython's
build needs: `--print-multiarch` must answer x86_64-linux-musl (3.11's configure aborts on a
triplet mismatch otherwise), and musl-gcc's -nostdinc hides the kernel headers (linux/, asm/,
asm-generic/), which the SDK carries a copy of and appends with -idirafter.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from forge import errors

WRAPPER_NAME = "x86_64-linux-musl-gcc"
KERNEL_HEADER_DIRS = {"linux": "/usr/include/linux", "asm-generic": "/usr/include/asm-generic",
                      "asm": "/usr/include/x86_64-linux-gnu/asm"}


@dataclass(frozen=True)
class Compiler:
    musl_gcc: Path
    identity: str  # goes into the cache key: gcc version + musl libc.a hash + kernel headers


def find_compiler(override: str | None = None) -> Compiler:
    name = override or os.environ.get("FORGE_MUSL_GCC") or "musl-gcc"
    found = shutil.which(name)
    if not found:
        raise errors.CompilerNotFound(
            f"forge needs a musl C compiler to build the SDK and could not find {name!r} on PATH. "
            f"On Debian or Ubuntu install it with `apt-get install musl-tools` (the README's "
            f"bootstrap step does this), or point FORGE_MUSL_GCC at a musl-gcc.")
    for d in KERNEL_HEADER_DIRS.values():
        if not Path(d, "").is_dir():
            raise errors.CompilerNotFound(
                f"the Linux kernel headers are missing ({d} does not exist); musl programs that use "
                f"sockets and ioctls need them. Install them with `apt-get install linux-libc-dev`.")
    try:
        version = subprocess.run([found, "--version"], capture_output=True, text=True,
                                 check=True).stdout.splitlines()[0]
        libc = subprocess.run([found, "-print-file-name=libc.a"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError, IndexError) as exc:
        raise errors.CompilerNotFound(
            f"{found} does not run ({exc}). Reinstall it (`apt-get install --reinstall musl-tools`) "
            f"or point FORGE_MUSL_GCC at a working musl-gcc.") from None
    h = hashlib.sha256(version.encode())
    h.update(Path(libc).read_bytes() if Path(libc).is_file() else libc.encode())
    version_h = Path("/usr/include/linux/version.h")
    if version_h.is_file():
        h.update(version_h.read_bytes())
    return Compiler(Path(found), h.hexdigest())


def install_wrapper(compiler: Compiler, sdk_root: Path) -> Path:
    """Put the kernel headers and the compiler wrapper into the SDK; return the wrapper's path."""
    headers = sdk_root / "kernel-headers"
    for name, src in KERNEL_HEADER_DIRS.items():
        shutil.copytree(src, headers / name, symlinks=False, dirs_exist_ok=True)
    bindir = sdk_root / "bin"
    bindir.mkdir(parents=True, exist_ok=True)
    wrapper = bindir / WRAPPER_NAME
    # The headers are found relative to the wrapper so the SDK directory can be moved.
    wrapper.write_text(
        "#!/bin/sh\n"
        "# musl-gcc for forge: answer the musl triplet, and append the SDK's kernel headers.\n"
        'case "$1" in --print-multiarch) echo x86_64-linux-musl; exit 0;; esac\n'
        'here=$(cd "$(dirname "$0")/.." && pwd)\n'
        f'exec {compiler.musl_gcc} "$@" -idirafter "$here/kernel-headers"\n')
    wrapper.chmod(0o755)
    return wrapper
