"""A build's result as a typed, frozen value: what `forge build` writes to its output directory
(the marker file forge-build.json) and what bench, deploy, push and workload detection read back.

The marker's JSON keys are unchanged (`forge build --json` prints the same object); `data` keeps
the whole summary so a key added by a target needs no change here."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

MARKER = "forge-build.json"            # every forge output dir has it: our right to replace the dir
GENERATED_MARKER = ".forge-generated.json"  # a directory forge generated (deploy projects)
MARKERS = (MARKER, GENERATED_MARKER)


@dataclass(frozen=True)
class BuildOutput:
    """Common to every target: name, target, digest and the full summary (read-only)."""
    name: str
    target: str
    digest: str
    data: Mapping = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_summary(cls, summary: Mapping) -> "BuildOutput":
        target = summary.get("target", "native")
        kind = _KINDS.get(target, BuildOutput)
        return kind(name=summary.get("name", ""), target=target, digest=summary.get("digest", ""),
                    data=MappingProxyType(dict(summary)))

    def to_summary(self) -> dict:
        return dict(self.data)

    def write(self, out_dir: Path) -> Path:
        path = Path(out_dir) / MARKER
        path.write_text(json.dumps(self.to_summary(), indent=2, sort_keys=True))
        return path

    def image_path(self) -> Path | None:
        """The image this build wrote (an OCI layout dir or a docker archive), or None (wasm)."""
        return None

    @property
    def python(self) -> str:
        """The CPython version the build carries."""
        return self.data.get("python", "")

    @property
    def cached_compile(self) -> bool:
        return bool(self.data.get("cached_compile", False))

    @property
    def build_seconds(self) -> float | None:
        """Set by forge.build on the summary it returns (not in every marker written before)."""
        return self.data.get("build_seconds")


@dataclass(frozen=True)
class NativeOutput(BuildOutput):
    def image_path(self) -> Path | None:
        return Path(self.data["image"]) if self.data.get("image") else None

    @property
    def binary(self) -> Path:
        return Path(self.data["binary"])

    @property
    def tag(self) -> str:
        return self.data.get("tag", "")

    @property
    def binary_size(self) -> int:
        return int(self.data.get("binary_size", 0))

    @property
    def image_size_compressed(self) -> int:
        return int(self.data.get("image_size_compressed", 0))

    @property
    def image_size_uncompressed(self) -> int:
        return int(self.data.get("image_size_uncompressed", 0))

    @property
    def sbom(self) -> Path | None:
        return Path(self.data["sbom"]) if self.data.get("sbom") else None

    @property
    def verified(self) -> bool:
        """The start check (forge/verify.py) ran and passed."""
        return bool(self.data.get("verified", False))

    @property
    def verify_method(self) -> str | None:
        return self.data.get("verify_method")

    @property
    def verify_cached(self) -> bool:
        return bool(self.data.get("verify_cached", False))

    @property
    def start_seconds(self) -> float | None:
        return self.data.get("start_seconds")


@dataclass(frozen=True)
class WasmOutput(BuildOutput):
    @property
    def module(self) -> Path:
        return Path(self.data["module"])

    @property
    def preinitialized(self) -> bool:
        return bool(self.data.get("preinitialized", False))

    @property
    def module_size(self) -> int:
        return int(self.data.get("module_size", 0))

    @property
    def module_size_gzip(self) -> int:
        return int(self.data.get("module_size_gzip", 0))

    @property
    def precompiled(self) -> Path | None:
        return Path(self.data["precompiled"]) if self.data.get("precompiled") else None

    @property
    def precompiled_size(self) -> int:
        return int(self.data.get("precompiled_size", 0))

    @property
    def precompiled_for(self) -> str:
        return self.data.get("precompiled_for", "")

    @property
    def start_ms(self) -> float | None:
        return self.data.get("start_ms")

    @property
    def workers(self) -> Mapping:
        """The Workers size verdict (forge/deploy/platform.py): gzip_size, limits, fits_free/fits_paid."""
        return self.data.get("workers", {})

    @property
    def serves_requests(self) -> bool:
        """An app served as JSON lines on stdin/stdout (False: a program with its own stdin/stdout)."""
        return str(self.data.get("protocol", "")).startswith("JSON")


_KINDS = {"native": NativeOutput, "wasm": WasmOutput}


def is_output(path: Path) -> bool:
    """Whether path is a forge build output directory."""
    path = Path(path)
    return path.is_dir() and (path / MARKER).is_file()


def read(out_dir: Path) -> BuildOutput:
    """The build output in out_dir (FileNotFoundError if it is not one)."""
    return BuildOutput.from_summary(json.loads((Path(out_dir) / MARKER).read_text()))


def write(out_dir: Path, summary: Mapping) -> BuildOutput:
    """Write summary as out_dir's marker; returns the typed value."""
    value = BuildOutput.from_summary(summary)
    value.write(out_dir)
    return value


def image_path_in(out_dir: Path) -> Path | None:
    """The image inside a build output directory, found on disk (the dir may have moved since the
    build wrote absolute paths): image/ or image.tar."""
    out_dir = Path(out_dir)
    if is_output(out_dir):
        for name in ("image", "image.tar"):
            if (out_dir / name).exists():
                return out_dir / name
    return None
