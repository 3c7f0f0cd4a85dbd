"""The variants forge is compared against, built here, offline, and cached on disk: one module a variant.

Recipes live in images/baselines/ (the debootstrap script, pinned tool requirements); these modules
run them. Every built baseline is cached under <forge cache>/bench/ in a directory named by a hash
of all of its inputs (recipe files, workload sources, forge_runtime, tool pins, host Python), with
meta.json recording its sizes and how long it took to build. Its image is put into the Docker
engine under a tag carrying that hash, so an unchanged baseline is neither rebuilt nor reloaded.

  cpython      (cpython.py) Debian bookworm slim rootfs (debootstrap minbase + python3, slimmed as
               python:3.11-slim is) + /app (workload, forge_runtime copy, .pyc), `docker import`ed;
               CMD python3 -m forge_runtime MODULE:ATTR
  nuitka       (nuitka.py) `nuitka --standalone` (no other flags) with this machine's Debian Python
               (glibc, dynamic) -> the .dist directory in /app of the same slim rootfs, `docker import`ed
  pyinstaller  (pyinstaller.py) `pyinstaller --onefile`, made static by `staticx`, alone in a FROM
               scratch image (forge's image writer and base layer)
  floor        (floor.py) images/floor/floor.c (forge.image.floor.build_floor), FROM scratch the same way
  wasm         (wasm.py) `forge build --target wasm`, run in forge's own process

common.py holds what they share (input hash, meta, host Python, tool venvs, engine helpers); slim.py
the Debian slim rootfs and image. The values they hand back (Variant) are in forge.bench.model.
"""

from __future__ import annotations

from typing import Protocol

from forge.bench.baselines.cpython import build_cpython_variant
from forge.bench.baselines.floor import build_floor_variant
from forge.bench.baselines.nuitka import build_nuitka_variant
from forge.bench.baselines.pyinstaller import build_pyinstaller_variant
from forge.bench.baselines.slim import debian_source, docker_import, slim_rootfs
from forge.bench.baselines.wasm import wasm_variant
from forge.bench.model import Variant
from forge.workload import Workload


class Builder(Protocol):
    """A workload baseline: build (or take from the cache) and, with a Docker client, load its image."""
    def __call__(self, w: Workload, client, rebuild: bool = False) -> Variant: ...


BUILDERS: dict[str, Builder] = {
    "cpython": build_cpython_variant,
    "nuitka": build_nuitka_variant,
    "pyinstaller": build_pyinstaller_variant,
}

__all__ = ["BUILDERS", "Builder", "build_cpython_variant", "build_floor_variant", "build_nuitka_variant",
           "build_pyinstaller_variant", "debian_source", "docker_import", "slim_rootfs", "wasm_variant"]
