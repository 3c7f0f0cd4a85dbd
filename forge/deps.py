"""The workload's pure-Python dependencies, installed by the SDK's own pip into a cached directory.

The SDK interpreter is static, so pip only accepts pure wheels (py3-none-any); anything with a C
extension is either built from its sdist (and then found as a .so) or fails to build. Both are
refused here, before Nuitka runs, naming the package and the shared object.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from forge import errors, pip_python
from forge.cache import cache_root, file_lock, staging_dir
from forge.sdk.layout import Sdk
from forge.workload import Workload

NATIVE_SUFFIXES = (".so", ".pyd", ".dylib")


@dataclass(frozen=True)
class Distribution:
    name: str
    version: str
    license: str


@dataclass(frozen=True)
class DependencyEnv:
    site: Path | None                 # None when the workload has no dependencies
    distributions: tuple[Distribution, ...]

    @property
    def search_path(self) -> list[Path]:
        return [self.site] if self.site else []


def _owner(site: Path, native: Path) -> str:
    rel = native.relative_to(site).as_posix()
    for record in site.glob("*.dist-info/RECORD"):
        if any(line.split(",", 1)[0] == rel for line in record.read_text().splitlines()):
            return record.parent.name[: -len(".dist-info")].rsplit("-", 1)[0]
    return rel.split("/", 1)[0]


def _license(meta: str) -> str:
    for key in ("License-Expression", "License"):
        m = re.search(rf"^{key}: (.+)$", meta, re.M)
        if m and m.group(1).strip() not in {"", "UNKNOWN"} and len(m.group(1)) < 80:
            return m.group(1).strip()
    classifiers = re.findall(r"^Classifier: License :: (?:OSI Approved :: )?(.+)$", meta, re.M)
    return classifiers[0] if classifiers else "NOASSERTION"


def read_distributions(site: Path) -> tuple[Distribution, ...]:
    dists = []
    for meta_file in sorted(site.glob("*.dist-info/METADATA")):
        meta = meta_file.read_text(errors="replace")
        name = re.search(r"^Name: (.+)$", meta, re.M).group(1).strip()
        version = re.search(r"^Version: (.+)$", meta, re.M).group(1).strip()
        dists.append(Distribution(name, version, _license(meta)))
    return tuple(dists)


# Requirements that point at something mutable (a local path, a VCS checkout, an editable install)
# are reinstalled on every build instead of being taken from the cache.
_VOLATILE = re.compile(r"(^-e\b|^--editable\b|file:|git\+|hg\+|svn\+|^\.{1,2}/|^/)")


def install(w: Workload, sdk: Sdk, log: Path) -> DependencyEnv:
    if not w.requirements:
        return DependencyEnv(None, ())
    if w.requirements_file:
        args = ["-r", str(w.requirements_file)]
    else:
        args = list(w.requirements)
    key = hashlib.sha256(json.dumps([sdk.manifest["key"], sorted(w.requirements)]).encode()).hexdigest()
    volatile = any(_VOLATILE.search(r) for r in w.requirements)
    final = cache_root() / "deps" / key[:24]
    with file_lock(final.with_name(final.name + ".lock")):
        if volatile or not (final / ".complete").is_file():
            with staging_dir(final) as stage:
                site = stage / "site"
                # CC: if pip builds an sdist, it builds with the musl compiler; the .so is then caught.
                env = {**os.environ, "CC": str(sdk.cc), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
                with open(log, "ab") as fh:
                    proc = subprocess.run(
                        [str(sdk.python), "-m", "pip", "install", "--no-compile", "--target", str(site),
                         "--root-user-action=ignore", *args],
                        stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=w.project_dir)
                if proc.returncode != 0:
                    text = log.read_text(errors="replace")
                    mismatch = pip_python.find_mismatch(text)
                    if mismatch:
                        raise errors.DependencyNeedsOtherPython(
                            pip_python.explain(mismatch, sdk.version, log))
                    failed = re.findall(r"Failed to build ([\w.\-]+)|Building wheel for ([\w.\-]+) .*error",
                                        text)
                    names = sorted({a or b for a, b in failed})
                    if names:
                        raise errors.NativeExtensionDependency(
                            f"{', '.join(names)} could not be built as a pure-Python package: it has "
                            f"C extension modules, which cannot be linked into a static binary. Use a "
                            f"pure-Python alternative, or a version of it without compiled speedups. "
                            f"pip's log: {log}")
                    tail = "\n".join(text.splitlines()[-12:])
                    raise errors.DependencyInstallFailed(
                        f"pip could not install {' '.join(w.requirements)} into the build environment:\n"
                        f"{tail}\nFull log: {log}. Fix the requirement (name, version, index) and build again.")
                natives = sorted(p for p in site.rglob("*") if p.name.endswith(NATIVE_SUFFIXES)
                                 or ".so." in p.name)
                if natives:
                    owners = sorted({f"{_owner(site, p)} ({p.relative_to(site)})" for p in natives})
                    raise errors.NativeExtensionDependency(
                        f"dependencies ship C extension modules that cannot be linked statically: "
                        f"{'; '.join(owners)}. A static binary has no dynamic loader, so these could "
                        f"never load. Use pure-Python alternatives (or versions without compiled "
                        f"speedups) and build again.")
                (stage / ".complete").write_text("ok")
    site = final / "site"
    return DependencyEnv(site, read_distributions(site))
