"""What a built SDK looks like on disk, and how to find one in the cache."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from forge import errors
from forge.cache import cache_root
from forge.sdk import sources as srcs

MANIFEST = "forge-sdk.json"  # written last: its presence is what makes an entry complete

# Built into the interpreter (issue #2's list plus what they need: the CJK codecs and friends).
REQUIRED_BUILTINS = (
    "zlib", "_ssl", "_hashlib", "_ctypes", "_sqlite3", "_bz2", "_lzma", "_decimal", "pyexpat",
    "_elementtree", "_uuid", "_asyncio", "_socket", "select", "mmap", "unicodedata",
    "_multiprocessing", "_json", "_struct", "binascii", "math", "_datetime", "_random", "_bisect",
    "_heapq", "array", "_csv", "_zoneinfo", "_codecs_cn", "_codecs_hk", "_codecs_iso2022",
    "_codecs_jp", "_codecs_kr", "_codecs_tw", "_multibytecodec", "_posixsubprocess", "fcntl",
    "_contextvars", "_queue", "_pickle", "_blake2", "_sha3", "_statistics", "_opcode",
)


def sdk_root(cache: Path | None = None) -> Path:
    return (cache or cache_root()) / "sdk"


def sdk_dir(cache: Path, version: str, key: str) -> Path:
    return sdk_root(cache) / f"cpython-{srcs.cpython_source(version).version}-musl-{key[:16]}"


@dataclass(frozen=True)
class Sdk:
    path: Path
    manifest: dict

    @classmethod
    def load(cls, path: Path) -> "Sdk":
        return cls(path, json.loads((path / MANIFEST).read_text()))

    @property
    def python(self) -> Path:
        return self.path / "python" / "bin" / "python3"

    @property
    def cc(self) -> Path:
        return self.path / "bin" / "x86_64-linux-musl-gcc"

    @property
    def deps_lib(self) -> Path:
        return self.path / "deps" / "lib"

    @property
    def mimalloc_object(self) -> Path:
        """The allocator object the recipe's mimalloc stage builds (linked into workloads)."""
        return self.deps_lib / "forge-mimalloc.o"

    @property
    def cpython_tests(self) -> Path:
        """CPython's own Lib/test, kept beside the SDK for its regression tests (never shipped)."""
        return self.path / "cpython-tests"

    @property
    def version(self) -> str:
        return self.manifest["python_version"]

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file() and not p.is_symlink())

    def info(self) -> dict:
        return {
            "python_version": self.version,
            "path": str(self.path),
            "interpreter": str(self.python),
            "cc": str(self.cc),
            "builtin_modules": self.manifest["builtin_modules"],
            "sources": {s["name"]: s["version"] for s in self.manifest["sources"]},
            "openssl": self.manifest["openssl"],
            "packages": self.manifest["packages"],
            "size_bytes": self.size_bytes(),
            "cache_key": self.manifest["key"],
        }


def find_sdk(version: str = srcs.DEFAULT_PYTHON, compiler_override: str | None = None) -> Sdk:
    """The SDK the current inputs would build, if it is in the cache; SdkMissing otherwise."""
    from forge.sdk.key import cache_key
    from forge.sdk.compiler import find_compiler

    path = sdk_dir(cache_root(), version, cache_key(version, find_compiler(compiler_override)))
    if not (path / MANIFEST).is_file():
        raise errors.SdkMissing(
            f"no SDK for Python {srcs.cpython_source(version).version} is built on this machine "
            f"yet (looked in {path}). Build it once with `forge toolchain build` (about 10 minutes "
            f"on 2 cores; cached afterwards), or pass --build-sdk to build it now.")
    return Sdk.load(path)
