"""The values forge bench's modules pass one another (a leaf: it imports no other bench module but
measure's ProcessSpec): a Variant ready to measure, the variants' labels, the bench cache."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from forge.bench.measure import ProcessSpec
from forge.cache import cache_root


def bench_cache() -> Path:
    return cache_root() / "bench"


def log_path(name: str) -> Path:
    d = bench_cache() / "logs"
    d.mkdir(parents=True, exist_ok=True)
    return d / f"{name}.log"


@dataclass
class Variant:
    """A variant ready to measure (or, with available=False, why it is not)."""
    name: str
    label: str
    available: bool = True
    reason: str | None = None
    image: str | None = None                 # tag in the Docker engine (None: no container runs)
    size_compressed: int | None = None       # bytes a registry stores (gzip layers + config + manifest)
    size_uncompressed: int | None = None     # sum of the uncompressed layer tars
    build_seconds: float | None = None       # sources -> image (one-time prerequisites excluded)
    build_cached: bool = False               # build_seconds was recorded when the cache entry was made
    process: ProcessSpec | None = None       # how it runs on the host (no container)
    in_process: Callable[[], dict] | None = None   # or a run measured inside forge (the wasm module)
    reload: Callable[[], None] | None = None       # puts the image back into the engine if it vanished
    notes: dict[str, str] = field(default_factory=dict)


def unavailable(name: str, label: str, reason: str) -> Variant:
    return Variant(name, label, available=False, reason=reason)


LABELS = {
    "forge": "forge (static musl, scratch)",
    "cpython": "CPython 3.11 (Debian slim)",
    "nuitka": "Nuitka default (glibc, slim)",
    "pyinstaller": "PyInstaller+staticx (scratch)",
    "floor": "static C floor (scratch)",
    "wasm": "WASM",
}
