"""What the user asked to build: the entry module, how it is served, and its dependencies.

A workload is either a `.py` file or a project directory whose pyproject.toml names the entry in
`[tool.forge] entry = "module:attr"`. An entry with `:attr` is served over HTTP by forge_runtime; an
entry without one is a program (CLI-type workload) that runs and exits.
"""

from __future__ import annotations

import ast
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from forge import config, errors
from forge.output import MARKERS

# Folders never compiled in nor hashed: outputs, VCS, virtualenvs, caches.
IGNORED_DIRS = {".git", ".hg", ".venv", "venv", "__pycache__", "dist", "build", ".forge",
                "node_modules", ".mypy_cache", ".pytest_cache", ".tox"}

OUTPUT_MARKERS = MARKERS


@dataclass(frozen=True)
class Workload:
    project_dir: Path
    module: str                      # importable name of the entry module
    attr: str | None                 # the app object; None: a program that runs and exits
    name: str                        # image/binary name
    requirements: tuple[str, ...] = ()   # [project] dependencies, or requirements.txt's lines
    requirements_file: Path | None = None  # requirements.txt, handed to pip as -r (options, -r, -e work)
    include: tuple[str, ...] = ()    # modules imported dynamically, from [tool.forge] include
    settings: dict = field(default_factory=dict, hash=False, compare=False)  # the [tool.forge] table
    requires_python: str | None = None   # [project] requires-python: picks the SDK when nothing else does

    @property
    def module_path(self) -> Path:
        base = self.project_dir.joinpath(*self.module.split("."))
        return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")

    def source_files(self) -> list[Path]:
        """Every file of the project that can change the build, sorted (for hashing)."""
        found = []
        # Directories forge generated (build outputs, deploy projects) are outputs, not inputs.
        generated = {p.parent for marker in OUTPUT_MARKERS for p in self.project_dir.rglob(marker)}
        for p in sorted(self.project_dir.rglob("*")):
            rel = p.relative_to(self.project_dir)
            if any(part in IGNORED_DIRS or part.endswith(".egg-info") for part in rel.parts):
                continue
            if any(g == p or g in p.parents for g in generated):
                continue
            if p.is_file() and p.suffix in {".py", ".toml", ".txt", ".json", ".cfg"}:
                found.append(p)
        return found


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-") or "app"


def _read_pyproject(project_dir: Path) -> dict:
    path = project_dir / "pyproject.toml"
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise errors.ConfigError(f"{path} is not valid TOML: {exc}. Fix the file and build again.") from None


def _requirements(project_dir: Path, pyproject: dict) -> tuple[tuple[str, ...], Path | None]:
    deps = pyproject.get("project", {}).get("dependencies")
    if deps:
        return tuple(deps), None
    req = project_dir / "requirements.txt"
    if req.is_file():
        lines = [line.strip() for line in req.read_text().splitlines()]
        return tuple(line for line in lines if line and not line.startswith("#")), req
    return (), None


def _defines_app(path: Path) -> bool:
    tree = ast.parse(path.read_bytes(), filename=str(path))
    for node in tree.body:
        targets = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            targets = [node.name]
        elif isinstance(node, ast.Assign):
            targets = [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            targets = [node.target.id]
        elif isinstance(node, (ast.ImportFrom, ast.Import)):
            targets = [a.asname or a.name.split(".")[0] for a in node.names]
        if "app" in targets:
            return True
    return False


def check_syntax(path: Path) -> None:
    try:
        compile(path.read_bytes(), str(path), "exec", dont_inherit=True)
    except SyntaxError as exc:
        line = (exc.text or "").rstrip("\n")
        raise errors.WorkloadSyntaxError(
            f"{exc.filename}:{exc.lineno}:{exc.offset or 0}: {exc.msg}\n    {line}\n"
            f"Fix the syntax error and build again.") from None


def resolve(src: Path) -> Workload:
    src = src.expanduser()
    if not src.exists():
        raise errors.WorkloadNotFound(
            f"{src} does not exist. Pass a Python file (forge build app.py) or a project directory "
            f"whose pyproject.toml has [tool.forge] entry = \"module:app\".")
    src = src.resolve()
    if src.is_file():
        if src.suffix != ".py":
            raise errors.WorkloadNotFound(f"{src} is not a .py file. Pass a Python file or a project directory.")
        project_dir, pyproject = src.parent, _read_pyproject(src.parent)
        check_syntax(src)
        module, attr = src.stem, ("app" if _defines_app(src) else None)
        tool = pyproject.get("tool", {}).get("forge", {})
        config.check_forge_table(tool, project_dir / "pyproject.toml")
    else:
        project_dir, pyproject = src, _read_pyproject(src)
        tool = pyproject.get("tool", {}).get("forge", {})
        config.check_forge_table(tool, project_dir / "pyproject.toml")
        entry = tool.get("entry")
        if entry is None:
            if (src / "app.py").is_file():
                check_syntax(src / "app.py")
                entry = "app:app" if _defines_app(src / "app.py") else "app"
            else:
                raise errors.WorkloadNotFound(
                    f"{src} has no entry: add [tool.forge] entry = \"module:app\" to its "
                    f"pyproject.toml (or an app.py), or pass the .py file itself.")
        if not isinstance(entry, str) or not re.fullmatch(r"[\w.]+(:\w+)?", entry):
            raise errors.ConfigError(
                f"[tool.forge] entry = {entry!r} in {src / 'pyproject.toml'} is not of the form "
                f"\"module:attr\" (served over HTTP) or \"module\" (a program). Fix it and build again.")
        module, _, attr = entry.partition(":")
        attr = attr or None
    name = _slug(tool.get("name") or pyproject.get("project", {}).get("name") or
                 (project_dir.name if src.is_dir() else src.stem))
    include = tool.get("include", [])
    if not isinstance(include, list) or not all(isinstance(i, str) for i in include):
        raise errors.ConfigError(f"[tool.forge] include must be a list of module names, got {include!r}.")
    requirements, requirements_file = _requirements(project_dir, pyproject)
    requires_python = pyproject.get("project", {}).get("requires-python")
    w = Workload(project_dir, module, attr, name, requirements, requirements_file, tuple(include), tool,
                 requires_python if isinstance(requires_python, str) else None)
    if not w.module_path.is_file():
        raise errors.WorkloadNotFound(
            f"the entry module {module!r} was not found in {project_dir} (looked for "
            f"{w.module_path}). Fix [tool.forge] entry in pyproject.toml.")
    for f in w.source_files():
        if f.suffix == ".py":
            check_syntax(f)
    return w
