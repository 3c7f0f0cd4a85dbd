"""Compilation targets behind one small interface (as cibuildwheel has one module per platform).

A target turns a prepared workload (sources, dependencies, the generated entry) into an Artifact.
Everything before (resolving, dependencies, analysis) and after (images, publishing) is shared.
"""

from __future__ import annotations

from forge import errors
from forge.targets.base import Artifact, BuildInputs, Target
from forge.targets.native import NativeTarget
from forge.targets.wasm import WasmTarget

__all__ = ["Artifact", "BuildInputs", "Target", "TARGETS", "get_target"]

# Adding a target: one module with a class that follows forge.targets.base.Target, one line here.
TARGETS: dict[str, Target] = {"native": NativeTarget(), "wasm": WasmTarget()}


def get_target(name: str) -> Target:
    if name not in TARGETS:
        raise errors.ConfigError(f"unknown target {name!r}; available: {', '.join(sorted(TARGETS))}.")
    return TARGETS[name]
