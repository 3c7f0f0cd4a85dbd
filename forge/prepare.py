"""Prepare a workload for compiling: the public API that `forge build` and `forge bench` share.

  runtime_dir(), runtime_files()   forge_runtime's sources (runtime/, installed as forge_runtime)
  runtime_on_path()                a content-keyed copy of them where `import forge_runtime` finds it
  hash_tree()                      files (relative name + bytes) into a hash: build and cache keys
  entry_source(), program_source(), check_module_source(), entry_script()
                                   the main module forge compiles (an app's generated entry, or a
                                   program with its start check hooked in first)
  prepare()                        dependencies installed, the search path, the modules analysis says
                                   to include: a frozen Prepared value
"""

from __future__ import annotations

import ast
import hashlib
import re
import shutil
import tokenize
from dataclasses import dataclass
from pathlib import Path

from forge import analysis, deps, inclusion
from forge.cache import cache_root, file_lock, staging_dir
from forge.sdk.layout import Sdk
from forge.verify import CHECK_IMPORTS_ENV, PROBE_ENV
from forge.workload import Workload


# --- the runtime copy ---------------------------------------------------------------------------------
def runtime_dir() -> Path:
    """Where forge_runtime's sources are (the installed package, or runtime/ in a checkout)."""
    import importlib.util

    spec = importlib.util.find_spec("forge_runtime")
    return Path(next(iter(spec.submodule_search_locations)))


def runtime_files() -> list[Path]:
    """forge_runtime's .py files, sorted."""
    root = runtime_dir()
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def hash_tree(h, root: Path, files: list[Path]) -> None:
    for f in files:
        h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() + b"\0")


def runtime_on_path() -> Path:
    """A directory where `import forge_runtime` finds a copy of runtime/ (keyed by its content),
    so analysis and Nuitka see exactly the runtime that was hashed into the build key."""
    runtime = runtime_dir()
    h = hashlib.sha256()
    hash_tree(h, runtime, runtime_files())
    root = cache_root() / "runtime" / h.hexdigest()[:16]
    with file_lock(root.with_name(root.name + ".lock")):
        if not (root / "forge_runtime" / "__init__.py").is_file():
            with staging_dir(root) as stage:
                shutil.copytree(runtime, stage / "forge_runtime", ignore=shutil.ignore_patterns("__pycache__"))
    return root


# --- the prepared workload ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Prepared:
    """A workload ready to analyse or compile: what compile_workload and bench's budget start from."""
    deps: deps.DependencyEnv
    runtime_root: Path                 # runtime_on_path(): the runtime copy (its name is its content key)
    search_path: tuple[Path, ...]      # project, dependencies' site, the runtime copy
    include: tuple[str, ...] = ()      # analysis' explicit includes + [tool.forge] include (analyse=True)


def prepare(w: Workload, sdk: Sdk, pip_log: Path, *, analyse: bool = True) -> Prepared:
    """Install the workload's dependencies for `sdk`, put the runtime copy on the search path and (with
    analyse) check every import, listing the modules to include explicitly."""
    dep_env = deps.install(w, sdk, pip_log)
    runtime_root = runtime_on_path()
    search = (w.project_dir, *dep_env.search_path, runtime_root)
    include: tuple[str, ...] = ()
    if analyse:
        include = tuple(sorted(set(analysis.analyse(w.source_files(), sdk.python, list(search),
                                                    tuple(m.name for m in dep_env.extensions)))
                               | set(w.include)))
    return Prepared(dep_env, runtime_root, search, include)


# --- the generated entry --------------------------------------------------------------------------------
# The start check's probe (forge/verify.py): inside the image, with no network, `FORGE_PROBE=1
# /app/app` (docker exec) asks the server that runs beside it for `GET http://ping/`, which
# forge_runtime answers itself; exit 0 if it did. Only the builtin _socket, before anything else.
PROBE_SOURCE = f"""\
import os
if os.environ.get("{PROBE_ENV}"):  # forge build's start check (forge/verify.py)
    import _socket
    _s = _socket.socket()
    _s.settimeout(2)
    try:
        _s.connect(("127.0.0.1", int(os.environ.get("PORT") or 8080)))
        _s.sendall(b"GET / HTTP/1.1\\r\\nHost: ping\\r\\nConnection: close\\r\\n\\r\\n")
        _ok = _s.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        _ok = False
    raise SystemExit(0 if _ok else 1)
"""


def entry_source(w: Workload) -> str:
    """The main module forge compiles for an app workload (the bench's baselines run it too)."""
    return ("# Generated by forge: serve the workload's app with forge_runtime.\n"
            + PROBE_SOURCE + inclusion.BOOT_SOURCE +
            "import forge_runtime\n"
            "forge_runtime.pause_gc_for_startup()\n"
            f"from {w.module} import {w.attr} as app\n"
            "forge_runtime.run(app)\n")


CHECK_MODULE = "_forge_boot"


def _top_level_imports(tree: ast.Module) -> list[str]:
    """The import statements a module runs at its top level, as source (guarded ones guarded)."""
    lines: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.Import) or (isinstance(node, ast.ImportFrom) and node.level == 0
                                            and node.module != "__future__"):
            lines.append(ast.unparse(node))
        elif isinstance(node, ast.Try):
            inner = [ast.unparse(n) for n in node.body if isinstance(n, ast.Import)
                     or (isinstance(n, ast.ImportFrom) and n.level == 0)]
            for stmt in inner:
                lines += ["try:", f"    {stmt}", "except ImportError:", "    pass"]
    return lines


def check_module_source(tree: ast.Module) -> str:
    """`FORGE_CHECK_IMPORTS=1 ./app`: import what the program imports at its top, then exit 0
    (a program may need arguments or input, so the start check runs this instead of it)."""
    body = _top_level_imports(tree) or ["pass"]
    return ("# Generated by forge: site-packages on sys.path; the program's start check (forge/verify.py).\n"
            + inclusion.BOOT_SOURCE +
            "import os\n"
            f"if os.environ.get(\"{CHECK_IMPORTS_ENV}\"):\n"
            + "".join(f"    {line}\n" for line in body) +
            "    raise SystemExit(0)\n")


def program_source(src: str, hook: str = f"import {CHECK_MODULE}") -> str:
    """The program's own source with `hook` run first (after its docstring and __future__ imports),
    on an existing line, so that line numbers in tracebacks stay the program's."""
    tree = ast.parse(src)
    lines = src.splitlines(keepends=True) or [""]
    body = tree.body
    i = 0
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
            and isinstance(body[0].value.value, str):
        i = 1
    while i < len(body) and isinstance(body[i], ast.ImportFrom) and body[i].module == "__future__":
        i += 1
    if i > 0:  # after the docstring / last __future__ import, on its last line
        node = body[i - 1]
        ln = node.end_lineno - 1
        raw = lines[ln].encode()
        lines[ln] = (raw[:node.end_col_offset] + f"; {hook}".encode() + raw[node.end_col_offset:]).decode()
        return "".join(lines)
    if not body:
        return src + ("" if src.endswith("\n") or not src else "\n") + hook + "\n"
    first = body[0]
    start = min([first.lineno, *(d.lineno for d in getattr(first, "decorator_list", ()))]) - 1
    simple = not isinstance(first, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.If, ast.For,
                                    ast.AsyncFor, ast.While, ast.Try, ast.With, ast.AsyncWith,
                                    ast.Match, getattr(ast, "TryStar", ast.Try)))
    if simple:
        lines[start] = f"{hook}; " + lines[start]
        return "".join(lines)
    for j in range(start - 1, -1, -1):  # a blank line above the first statement
        if not lines[j].strip() and not (j < 2 and re.match(r"^[ \t\f]*#.*coding[:=]", lines[j])):
            lines[j] = hook + "\n"
            return "".join(lines)
    lines.insert(start, hook + "\n")  # no room: the program's line numbers move down by one
    return "".join(lines)


def entry_script(w: Workload, build_dir: Path) -> Path:
    """The main module Nuitka compiles, written into build_dir when it is generated."""
    if w.attr is None:
        # A program: Nuitka compiles (a copy of) the module itself as __main__, its start check
        # hooked in first.
        if "." in w.module:
            return w.module_path
        with tokenize.open(w.module_path) as fh:
            encoding, src = fh.encoding, fh.read()
        tree = ast.parse(src)
        (build_dir / f"{CHECK_MODULE}.py").write_text(check_module_source(tree))
        script = build_dir / w.module_path.name
        script.write_text(program_source(src), encoding=encoding)
        return script
    script = build_dir / "forge_main.py"
    script.write_text(entry_source(w))
    return script
