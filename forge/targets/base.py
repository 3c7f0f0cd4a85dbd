"""The values a target receives and returns, and the Target protocol (no target imports this
package's children, so the registry in forge/targets/__init__.py can import them at the top)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ContextManager, Protocol

from forge.sdk.layout import Sdk
from forge.workload import Workload


@dataclass(frozen=True)
class BuildInputs:
    workload: Workload
    sdk: Sdk
    entry_script: Path               # generated main module (what Nuitka compiles)
    search_path: tuple[Path, ...]    # project dir, dependency site, forge_runtime's parent
    include: tuple[str, ...]         # modules to include explicitly (dynamic imports)
    log: Path
    nuitka_flags: tuple[str, ...] = ()   # inclusion of whole packages etc. (forge/inclusion.py)
    keep_builtins: tuple[str, ...] = ()  # built-in C modules the bytecode dependencies import
    extensions: tuple = ()           # dependencies' extension modules (forge.extensions.ExtensionModule)


@dataclass(frozen=True)
class Artifact:
    path: Path                       # the binary (native) or module (wasm)
    target: str
    size: int
    details: dict = field(default_factory=dict)


class Target(Protocol):
    name: str
    whole_project: bool   # gets the inclusion plan (dependencies and project taken whole)
    makes_image: bool     # True: write_output() writes an image (so --load applies)
    product: str          # what it builds, for messages ("a wasm module")

    def fingerprint(self) -> str:
        """How this target compiles (flags, tool versions not in the SDK): part of the build cache key."""
        ...

    def sdk_python(self, requested: str) -> str:
        """The SDK version this target builds with, given the one the user selected."""
        ...

    def compile(self, inputs: BuildInputs, out_dir: Path) -> Artifact:
        """Compile into out_dir (a fresh scratch directory) and return the checked artifact."""
        ...

    def companion_files(self, artifact: Artifact) -> list[str]:
        """Names of the files beside artifact.path that belong to the build (kept with it)."""
        ...

    def write_output(self, artifact: Artifact, workload: Workload, out: Path, sdk: Sdk, dep_env,
                     cached: bool, *, opts, log_dir: Path,
                     step: Callable[[str], ContextManager]) -> dict:
        """Write the build output directory `out` (atomically, with forge.output's marker) and return
        the summary `forge build --json` prints. `opts` is forge.build.BuildOptions, `dep_env`
        forge.deps.DependencyEnv; `step(title)` wraps each stage in a progress step. A check that
        fails (the native start check) raises before anything is written."""
        ...
