"""What goes into the build besides what static imports reach (issue 13).

Frameworks import by string: Django imports its middleware, apps, backends and URL confs from
settings; Celery, SQLAlchemy dialects, Pydantic plugins and entry points do the same. Following
static imports misses all of that, and the binary then dies at start. So forge ships:

- every module of every installed distribution, whole, with its package data and its
  `.dist-info` (so importlib.metadata's version lookups and entry_points() work), as bytecode
  (`.pyc`, compiled by the SDK's interpreter, hash-based so builds are reproducible) in
  `/app/site-packages`, plus the standard-library packages those modules import. Nuitka is told
  not to follow into them (`--nofollow-import-to`), so it only compiles the workload: a Django
  build takes as long as hello's. The generated entry puts the directory on sys.path (and a
  finder for packages Nuitka carries only in part) before anything else runs.
- a dependency named in `[tool.forge] compile = ["pkg"]` is compiled to C by Nuitka instead
  (`--include-package`, with its data and metadata), and is not in site-packages.
- every module and package of the project itself, compiled to C.
- minus what `[tool.forge] exclude = ["pkg.sub", "*.tests"]` drops (from both).
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from forge import errors
from forge.output import MARKERS
from forge.cache import cache_root, file_lock, staging_dir
from forge.workload import IGNORED_DIRS, Workload

_NAME = re.compile(r"[A-Za-z_]\w*")
_PATTERN = re.compile(r"[\w*]+(\.[\w*]+)*")
# Project files that are tooling, not part of the workload.
_PROJECT_SKIP = {"setup.py", "conftest.py", "noxfile.py"}
SITE_DIR = "site-packages"    # beside the binary (/app/site-packages in the image)
TREE_VERSION = "1"


@dataclass(frozen=True)
class Inclusion:
    packages: tuple[str, ...] = ()      # --include-package (C): project packages, `compile` deps
    modules: tuple[str, ...] = ()       # --include-module (C): project modules, `compile` deps
    metadata: tuple[str, ...] = ()      # --include-distribution-metadata for `compile` deps
    bytecode: tuple[str, ...] = ()      # dependency top-levels shipped as .pyc in site-packages
    exclude: tuple[str, ...] = ()       # [tool.forge] exclude patterns

    def key(self) -> dict:
        return {"packages": self.packages, "modules": self.modules, "metadata": self.metadata,
                "bytecode": self.bytecode, "exclude": self.exclude, "tree": TREE_VERSION}

    def nuitka_flags(self) -> list[str]:
        flags = []
        for p in self.packages:
            flags += [f"--include-package={p}", f"--include-package-data={p}"]
        flags += [f"--include-module={m}" for m in self.modules]
        flags += [f"--include-distribution-metadata={d}" for d in self.metadata]
        flags += [f"--nofollow-import-to={b}" for b in self.bytecode]
        if self.bytecode or self.exclude:
            # Imports of what Nuitka does not follow are normal imports at run time (site-packages),
            # not errors; the start check catches what is really missing.
            flags.append("--no-deployment-flag=excluded-module-usage")
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
            if not any((p / m).is_file() for m in MARKERS):
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
    own = set(proj_packages) | set(proj_modules)
    packages = [p for p in (*(d for d in dep_packages if d in to_c), *proj_packages) if not _excluded(p, exclude)]
    modules = [m for m in (*(d for d in dep_modules if d in to_c), *proj_modules) if not _excluded(m, exclude)]
    bytecode = sorted(t for t in dep_tops if t not in to_c and t not in own and not _excluded(t, exclude))
    metadata = sorted(d for d, tops in dists.items() if tops & to_c)
    return Inclusion(tuple(dict.fromkeys(packages)), tuple(dict.fromkeys(modules)), tuple(metadata),
                     tuple(bytecode), exclude)


# --- the bytecode tree ----------------------------------------------------------------------------------
# Run by the SDK interpreter: its own py_compile (the magic number of the Python that runs them)
# and its own stdlib. Standard-library packages the dependencies import are shipped too (Nuitka
# only carries those the workload itself reaches); the test suites and GUI/dev tools are not.
_TREE_SCRIPT = r'''
import ast, json, os, py_compile, shutil, sys, fnmatch
spec = json.loads(sys.argv[1])
site, out, stdlib = spec["site"], spec["out"], spec["stdlib"]
exclude = spec["exclude"]
skip_std = {"test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "__phello__",
            "pydoc_data", "venv", "this", "antigravity", "site-packages"}
drop_suffixes = (".pyc", ".pyo", ".so", ".pyd", ".dylib", ".po", ".pyi", ".exe", ".dll")
def excluded(name):
    return any(name == p or name.startswith(p + ".") or fnmatch.fnmatchcase(name, p) for p in exclude)
imports, skipped, nbytes = set(), [], 0
def scan(tree, modname, is_pkg):
    pkg = modname if is_pkg else modname.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imports.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[:len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod:
                imports.add(mod)
                imports.update(f"{mod}.{a.name}" for a in node.names)
def ship(root, top, dest_root, rel_name):
    global nbytes
    src_top = os.path.join(root, top)
    if os.path.isfile(src_top + ".py"):
        files = [(src_top + ".py", top + ".py")]
    else:
        files = []
        for d, dirs, names in os.walk(src_top):
            dirs[:] = sorted(x for x in dirs if x != "__pycache__")
            for n in sorted(names):
                p = os.path.join(d, n)
                files.append((p, os.path.relpath(p, root)))
    for src, rel in files:
        parts = rel[:-3].split(os.sep) if rel.endswith(".py") else None
        if parts is not None:
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            if excluded(name):
                continue
            dst = os.path.join(dest_root, rel[:-3] + ".pyc")
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            try:
                source = open(src, "rb").read()
                scan(ast.parse(source, src), name, parts[-1] == "__init__")
                py_compile.compile(src, cfile=dst, dfile=os.path.join(rel_name, rel), doraise=True,
                                   invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
            except (SyntaxError, ValueError, py_compile.PyCompileError) as exc:
                skipped.append(f"{rel}: {exc.__class__.__name__}")
                continue
        else:
            if rel.endswith(drop_suffixes) or ".so." in rel:
                continue
            mod = ".".join(rel.split(os.sep)[:-1])
            if excluded(mod):
                continue
            dst = os.path.join(dest_root, rel)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copyfile(src, dst)
        nbytes += os.path.getsize(dst)
for top in spec["roots"]:
    ship(site, top, out, "site-packages")
for d in sorted(os.listdir(site)):
    if d.endswith(".dist-info") and d in spec["dist_info"]:
        dst = os.path.join(out, d)
        os.makedirs(dst)
        for n in sorted(os.listdir(os.path.join(site, d))):
            if n in ("METADATA", "entry_points.txt", "top_level.txt", "RECORD") or n.startswith("LICENSE"):
                shutil.copyfile(os.path.join(site, d, n), os.path.join(dst, n))
builtins = set(sys.builtin_module_names)
# What the interpreter imports before any code runs is frozen into it (and Nuitka carries the codecs).
done = {n.split(".")[0] for n in sys.modules if n not in builtins} | {"encodings"}
shipped_std = []
while True:
    tops = {n.split(".")[0] for n in imports} - done
    done |= tops
    if not tops:
        break
    imports = set()
    for top in sorted(tops):
        if top in builtins or top not in sys.stdlib_module_names or top in skip_std or excluded(top):
            continue
        if os.path.isdir(os.path.join(stdlib, top)) or os.path.isfile(os.path.join(stdlib, top + ".py")):
            ship(stdlib, top, out, "lib")
            shipped_std.append(top)
used_builtins = sorted(n for n in done if n in builtins)
json.dump({"stdlib": sorted(shipped_std), "builtins": used_builtins, "skipped": skipped,
           "bytes": nbytes}, open(os.path.join(out, ".forge-tree.json"), "w"), indent=1, sort_keys=True)
'''


def bytecode_tree(plan_: Inclusion, site: Path, sdk, dists_key: str) -> tuple[Path, dict]:
    """The cached site-packages tree of `plan_.bytecode` (+ the stdlib they import), and its
    manifest ({"stdlib", "builtins", "skipped", "bytes"})."""
    stdlib = next(sdk.path.glob("python/lib/python3.*/os.py")).parent
    dist_info = sorted(p.name for p in site.glob("*.dist-info")
                       if _dist_tops(p) & set(plan_.bytecode) or not _dist_tops(p))
    spec = {"site": str(site), "stdlib": str(stdlib), "roots": list(plan_.bytecode),
            "exclude": list(plan_.exclude), "dist_info": dist_info}
    key = hashlib.sha256(json.dumps([TREE_VERSION, sdk.manifest["key"], dists_key, spec,
                                     _TREE_SCRIPT]).encode()).hexdigest()[:24]
    final = cache_root() / "pyc" / key
    with file_lock(final.with_name(final.name + ".lock")):
        if not (final / SITE_DIR / ".forge-tree.json").is_file():
            with staging_dir(final) as stage:
                out = stage / SITE_DIR
                out.mkdir()
                spec["out"] = str(out)
                proc = subprocess.run([str(sdk.python), "-I", "-c", _TREE_SCRIPT, json.dumps(spec)],
                                      capture_output=True, text=True)
                if proc.returncode != 0:
                    raise errors.CompileFailed(
                        f"compiling the dependencies to bytecode failed:\n{proc.stderr[-3000:]}\n"
                        f"If a package cannot be compiled, drop it with [tool.forge] exclude.")
    tree = final / SITE_DIR
    return tree, json.loads((tree / ".forge-tree.json").read_text())


def _dist_tops(dist_info: Path) -> set[str]:
    record = dist_info / "RECORD"
    if not record.is_file():
        return set()
    tops = set()
    for line in record.read_text(errors="replace").splitlines():
        first = line.split(",", 1)[0].split("/", 1)[0]
        first = first[:-3] if first.endswith(".py") else first
        if _NAME.fullmatch(first):
            tops.add(first)
    return tops


# The generated entry's first lines: site-packages beside the binary on sys.path, and a finder for
# submodules of packages Nuitka carries only in part (their __path__ points into the binary's dir).
BOOT_SOURCE = f"""\
import os as _os, sys as _sys
_lib = _os.path.join(_os.path.dirname(_os.path.abspath(__file__)), "{SITE_DIR}")
if _os.path.isdir(_lib):
    _sys.path.append(_lib)

    class _ForgeSiteFinder:
        @staticmethod
        def find_spec(name, path=None, target=None):
            from importlib.machinery import PathFinder
            return PathFinder.find_spec(name, [_os.path.join(_lib, *name.split(".")[:-1])])

    _sys.meta_path.append(_ForgeSiteFinder)
"""
