"""The "static C floor": images/floor/floor.c, the smallest static HTTP server (answers 200 on $PORT).

It is the baseline `forge bench` compares workloads against, and the app the image tests put in
images (a real static binary that starts in a millisecond, so the tests exercise the image, not a
Python build).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from forge import errors
from forge.elfcheck import static_problems
from forge.fsio import atomic_file
from forge.image.rootfs import images_dir

FLOOR_CFLAGS = ("-static", "-Os", "-s", "-Wl,--build-id=none")


def floor_source() -> Path:
    return images_dir() / "floor" / "floor.c"


def build_floor(out_dir: Path, name: str = "app") -> Path:
    """Compile floor.c with `musl-gcc -static -Os` into out_dir/name (mode 0755); returns the path.

    `-s` strips symbols and `--build-id=none` drops the build-id note, so the same compiler gives
    the same bytes on every run (the binary goes into reproducible images).
    """
    cc = os.environ.get("FORGE_MUSL_GCC") or shutil.which("musl-gcc")
    if not cc:
        raise errors.CompilerNotFound(
            "musl-gcc is not on PATH, so the static C floor cannot be compiled. Install it "
            "(Debian/Ubuntu: `apt-get install musl-tools`, or run scripts/bootstrap.sh), or point "
            "FORGE_MUSL_GCC at a musl-gcc wrapper.")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / name
    with atomic_file(out, mode=0o755) as tmp:
        proc = subprocess.run([cc, *FLOOR_CFLAGS, "-o", str(tmp), str(floor_source())],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise errors.CompileFailed(
                f"musl-gcc failed to compile {floor_source()} (exit {proc.returncode}):\n{proc.stderr.strip()}\n"
                "Check that musl-tools is installed completely (musl-gcc needs musl's headers and libc.a).")
        problems = static_problems(tmp)
        if problems:
            raise errors.NotStatic(f"{cc} produced a floor binary that is not fully static: {'; '.join(problems)}. "
                                   "Use Debian's musl-tools musl-gcc, which links statically with -static.")
    return out
