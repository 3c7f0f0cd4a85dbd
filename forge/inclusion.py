"""What goes into the binary besides what static imports reach (issue 13).

Frameworks import by string: Django imports its middleware, apps, backends and URL confs from
settings; Celery, SQLAlchemy dialects, Pydantic plugins and entry points do the same. Following
static imports misses all of that, and the binary then dies at start. So forge includes:

- every module of every installed distribution, with its package data and its metadata (so
  importlib.metadata's version lookups and entry_points() work), as bytecode unless the workload
  opts a package into C with `[tool.forge] compile = ["pkg"]`;
- every module and package of the project itself, compiled to C;
- minus what `[tool.forge] exclude = ["pkg.sub", "*.tests"]` drops.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from forge import errors
from forge.workload import IGNORED_DIRS, Workload

_NAME = re.compile(r"[A-Za-z_]\w*")
_PATTERN = re.compile(r"[\w*]+(\.[\w*]+)*")
# Project files that are tooling, not part of the workload.
_PROJECT_SKIP = {"setup.py", "conftest.py", "noxfile.py"}


@dataclass(frozen=True)
class Inclusion:
    packages: tuple[str, ...] = ()      # --include-package (whole packages, with their data)
    modules: tuple[str, ...] = ()       # --include-module (single-file modules)
    metadata: tuple[str, ...] = ()      # --include-distribution-metadata (distribution names)
    bytecode: tuple[str, ...] = ()      # dependency top-levels kept as bytecode
    exclude: tuple[str, ...] = ()       # [tool.forge] exclude patterns

    def key(self) -> dict:
        return {"packages": self.packages, "modules": self.modules, "metadata": self.metadata,
                "bytecode": self.bytecode, "exclude": self.exclude}

    def nuitka_flags(self) -> list[str]:
        flags = []
        for p in self.packages:
            flags += [f"--include-package={p}", f"--include-package-data={p}"]
        flags += [f"--include-module={m}" for m in self.modules]
        flags += [f"--include-distribution-metadata={d}" for d in self.metadata]
        flags += [f"--noinclude-custom-mode={b}:bytecode" for b in self.bytecode]
        for e in self.exclude:
            flags += [f"--nofollow-import-to={e}", f"--noinclude-data-files={e.replace('.', '/')}"]
        return flags


def _string_list(settings: dict, key: str, what: str) -> tuple[str, ...]:
    value = settings.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and _PATTERN.fullmatch(v) for v in value):
        raise errors.ConfigError(
            f"[tool.forge] {key} must be a list of {what}, e.g. {key} = [\"django.contrib.gis\"]; "
            f"got {value!r}.")
    return tuple(value)


def top_level_names(site: Path) -> tuple[list[str], list[str]]:
    """(packages, modules) importable from an installed site directory."""
    packages, modules = [], []
    for p in sorted(site.iterdir()):
        if p.is_dir():
            if (_NAME.fullmatch(p.name) and p.name not in ("__pycache__", "bin")
                    and any(p.rglob("*.py"))):
                packages.append(p.name)
        elif p.suffix == ".py" and _NAME.fullmatch(p.stem):
            modules.append(p.stem)
    return packages, modules


def distribution_top_levels(site: Path) -> dict[str, set[str]]:
    """Distribution name -> the top-level names its RECORD installs."""
    out: dict[str, set[str]] = {}
    for record in sorted(site.glob("*.dist-info/RECORD")):
        meta = (record.parent / "METADATA").read_text(errors="replace")
        m = re.search(r"^Name: (.+)$", meta, re.M)
        name = m.group(1).strip() if m else record.parent.name.rsplit("-", 1)[0]
        tops = set()
        for line in record.read_text(errors="replace").splitlines():
            first = line.split(",", 1)[0].split("/", 1)[0]
            if first.endswith(".py"):
                first = first[:-3]
            if _NAME.fullmatch(first):
                tops.add(first)
        out[name] = tops
    return out


def project_names(w: Workload) -> tuple[list[str], list[str]]:
    """(packages, modules) of the project directory itself (not the entry module of a program:
    that one is compiled as the main module)."""
    packages, modules = [], []
    root = w.project_dir
    for p in sorted(root.iterdir()):
        if p.name in IGNORED_DIRS or p.name.endswith(".egg-info") or p.name.startswith("."):
            continue
        if p.is_dir() and _NAME.fullmatch(p.name) and (p / "__init__.py").is_file():
            if not any((p / m).is_file() for m in ("forge-build.json", ".forge-generated.json")):
                packages.append(p.name)
        elif (p.is_file() and p.suffix == ".py" and _NAME.fullmatch(p.stem)
              and p.name not in _PROJECT_SKIP):
            modules.append(p.stem)
    if w.attr is None and "." not in w.module:
        modules = [m for m in modules if m != w.module]
    return packages, modules


def _excluded(name: str, patterns: tuple[str, ...]) -> bool:
    import fnmatch
    return any(name == p or name.startswith(p + ".") or fnmatch.fnmatchcase(name, p) for p in patterns)


def plan(w: Workload, site: Path | None) -> Inclusion:
    exclude = _string_list(w.settings, "exclude", "module or package names (patterns like *.tests work)")
    compile_ = _string_list(w.settings, "compile", "top-level package names of dependencies")
    dep_packages, dep_modules, dists = [], [], {}
    if site is not None and site.is_dir():
        dep_packages, dep_modules = top_level_names(site)
        dists = distribution_top_levels(site)
    dep_tops = set(dep_packages) | set(dep_modules)
    # `compile` may name a distribution ("Django") or a top-level package ("django").
    by_dist = {re.sub(r"[-_.]+", "-", k).lower(): v for k, v in dists.items()}
    to_c: set[str] = set()
    for c in compile_:
        if c in dep_tops:
            to_c.add(c)
        elif re.sub(r"[-_.]+", "-", c).lower() in by_dist:
            to_c |= by_dist[re.sub(r"[-_.]+", "-", c).lower()] & dep_tops
        else:
            known = ", ".join(sorted(dep_tops)) or "none"
            raise errors.ConfigError(
                f"[tool.forge] compile = [... {c!r} ...] is not a top-level package of an installed "
                f"dependency (those are: {known}). Name one of them, or remove it.")
    proj_packages, proj_modules = project_names(w)
    packages = [p for p in (*dep_packages, *proj_packages) if not _excluded(p, exclude)]
    modules = [m for m in (*dep_modules, *proj_modules) if not _excluded(m, exclude)]
    bytecode = sorted(t for t in dep_tops if t not in to_c and not _excluded(t, exclude)
                      and t not in proj_packages and t not in proj_modules)
    metadata = sorted(d for d, tops in dists.items() if not tops or any(not _excluded(t, exclude) for t in tops))
    return Inclusion(tuple(dict.fromkeys(packages)), tuple(dict.fromkeys(modules)), tuple(metadata),
                     tuple(bytecode), exclude)
