"""The SDK's cache key: a hash of everything that decides what an SDK contains (layout version,
sources, recipe, pins, patches, compiler). A leaf module: forge.sdk.layout finds an SDK by it and
forge.sdk.builder builds one under it, and neither imports the other for it."""

from __future__ import annotations

import hashlib
import json
from importlib import resources

from forge.sdk import compiler as compilers
from forge.sdk import sources as srcs

# Bump when the post-processing below changes what an SDK contains (the recipe, sources, patches
# and pins are hashed directly).
SDK_LAYOUT_VERSION = "4"


def _package_file(name: str) -> bytes:
    return resources.files("forge.sdk").joinpath(name).read_bytes()


def _patches() -> list[tuple[str, bytes]]:
    folder = resources.files("forge.sdk").joinpath("patches")
    return sorted((p.name, p.read_bytes()) for p in folder.iterdir() if p.name.endswith(".patch"))


def _wasm_host_files() -> list:
    folder = resources.files("forge.sdk").joinpath("wasm-host")
    return sorted(folder.iterdir(), key=lambda p: p.name)


def _is_wasm_host(version: str) -> bool:
    return srcs.cpython_source(version) in srcs.WASM_HOST.values()


def cache_key(version: str, compiler: compilers.Compiler) -> str:
    h = hashlib.sha256()
    parts = {
        "layout": SDK_LAYOUT_VERSION,
        "python": srcs.cpython_source(version).version,
        "sources": [(s.name, s.version, s.sha256) for s in srcs.sources_for(version)],
        "recipe": hashlib.sha256(_package_file("recipe.sh")).hexdigest(),
        "requirements": hashlib.sha256(_package_file("requirements.txt")).hexdigest(),
        # The wasm host's CPython patches live in wasm-host/ (hashed below), so recipe patches for
        # 3.13+ never rebuild it.
        "patches": [(n, hashlib.sha256(b).hexdigest()) for n, b in _patches()
                    if not (_is_wasm_host(version) and n.startswith("cpython-"))],
        "compiler": compiler.identity,
    }
    if _is_wasm_host(version):
        parts["wasm_host"] = [(p.name, hashlib.sha256(p.read_bytes()).hexdigest()) for p in _wasm_host_files()]
    h.update(json.dumps(parts, sort_keys=True).encode())
    return h.hexdigest()
