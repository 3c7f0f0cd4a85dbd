"""Static look at the workload's imports, before anything is compiled.

Finds (1) imports that cannot be resolved in the SDK + project + dependencies, so the user gets
file:line instead of a Nuitka failure minutes later, and (2) modules imported dynamically, which
Nuitka cannot see and must be told to include.
"""

from __future__ import annotations

import ast
import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from forge import errors

# Imports that are optional by convention (guarded, TYPE_CHECKING, or under a platform test such as
# `if sys.platform == "win32":`) never fail the build.
_OPTIONAL_HANDLERS = {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}

# Imported by the stdlib through a name computed at run time: if the key is used, include these.
DYNAMIC_RULES: dict[str, tuple[str, ...]] = {
    "asyncio": ("concurrent.futures.thread",),        # loop.run_in_executor -> futures.__getattr__
    "concurrent.futures": ("concurrent.futures.thread", "concurrent.futures.process"),
    "xml.sax": ("xml.sax.expatreader",),              # make_parser() imports by name
    "xml.dom.minidom": ("xml.dom.expatbuilder",),
    "xml.etree.ElementTree": ("xml.etree.cElementTree",),
    "socket": ("encodings.idna",),                    # host names go through the idna codec
    "ssl": ("encodings.idna",),
    "zoneinfo": ("zoneinfo._tzpath",),
}
ALWAYS_INCLUDE = ("encodings.utf_8", "encodings.ascii", "encodings.latin_1", "encodings.idna")


@dataclass(frozen=True)
class ImportSite:
    module: str
    file: Path
    line: int
    optional: bool


def _is_guarded(node: ast.Try) -> bool:
    for h in node.handlers:
        if h.type is None:
            return True
        names = [h.type] if not isinstance(h.type, ast.Tuple) else list(h.type.elts)
        if any(isinstance(n, ast.Name) and n.id in _OPTIONAL_HANDLERS for n in names):
            return True
    return False


def collect_imports(path: Path) -> list[ImportSite]:
    tree = ast.parse(path.read_bytes(), filename=str(path))
    sites: list[ImportSite] = []

    def visit(node: ast.AST, optional: bool) -> None:
        if isinstance(node, ast.Try):
            guarded = optional or _is_guarded(node)
            for child in node.body:
                visit(child, guarded)
            for child in [*node.handlers, *node.orelse, *node.finalbody]:
                visit(child, optional)
            return
        if isinstance(node, ast.If):
            test = ast.unparse(node.test)
            if "TYPE_CHECKING" in test:
                return
            if "sys.platform" in test or "os.name" in test or "platform.system" in test:
                for child in node.body + node.orelse:  # another platform's imports are optional
                    visit(child, True)
                return
        if isinstance(node, ast.Import):
            for alias in node.names:
                sites.append(ImportSite(alias.name, path, node.lineno, optional))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module != "__future__":
                sites.append(ImportSite(node.module, path, node.lineno, optional))
        elif isinstance(node, ast.Call):
            # importlib.import_module("x") / __import__("x") with a literal: a dynamic import we can see
            fn = ast.unparse(node.func)
            if fn in {"importlib.import_module", "import_module", "__import__"} and node.args:
                arg = node.args[0]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and not arg.value.startswith("."):
                    sites.append(ImportSite(arg.value, path, node.lineno, True))
        for child in ast.iter_child_nodes(node):
            visit(child, optional)

    visit(tree, False)
    return sites


def codec_names(path: Path) -> set[str]:
    """String literals passed to .encode()/.decode()/codecs.lookup(): codecs found by name."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            fn = ast.unparse(node.func)
            if fn.endswith((".encode", ".decode")) or fn in {"codecs.lookup", "codecs.open"}:
                if isinstance(node.args[0].value, str):
                    names.add(node.args[0].value.lower().replace("-", "_"))
    return names


def find_specs(python: Path, search_path: list[Path], modules: list[str]) -> dict[str, bool]:
    """Ask the SDK interpreter which modules it can find (stdlib, built-ins, and search_path)."""
    # find_spec("pkg.sub") runs pkg/__init__.py: whatever it prints or raises must not be taken
    # for our answer, so the answer goes to a file and a package that fails to import is reported.
    script = (
        "import sys, json, importlib.util\n"
        "paths, names, out_path = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]\n"
        "sys.path[:0] = paths\n"
        "out, broken = {}, {}\n"
        "for n in names:\n"
        "    try:\n"
        "        out[n] = importlib.util.find_spec(n) is not None\n"
        "    except (ImportError, ValueError):\n"
        "        out[n] = False\n"
        "    except BaseException as exc:\n"
        "        out[n] = True\n"
        "        broken[n] = f'{type(exc).__name__}: {exc}'\n"
        "open(out_path, 'w').write(json.dumps({'found': out, 'broken': broken}))\n")
    with tempfile.TemporaryDirectory(prefix="forge-specs-") as tmp:
        out_path = Path(tmp) / "specs.json"
        proc = subprocess.run([str(python), "-I", "-c", script, json.dumps([str(p) for p in search_path]),
                               json.dumps(modules), str(out_path)], capture_output=True, text=True)
        if proc.returncode != 0 or not out_path.is_file():
            raise errors.UnresolvedImport(
                f"resolving the workload's imports failed: importing one of its packages exited "
                f"the interpreter.\n{proc.stderr[-2000:]}\nFix the package's import-time code.")
        result = json.loads(out_path.read_text())
    for name, problem in result["broken"].items():
        raise errors.UnresolvedImport(
            f"`{name}` exists but importing its parent package failed ({problem}). Fix the "
            f"package's import-time code, then build again.")
    return result["found"]


def analyse(files: list[Path], python: Path, search_path: list[Path],
            builtins: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Check every import of the workload; return the modules to include explicitly. `builtins`:
    the extension modules the dependencies' source builds link in (no file the SDK can find)."""
    sites = [s for f in files if f.suffix == ".py" for s in collect_imports(f)]
    tops = sorted({s.module.split(".")[0] for s in sites} | {s.module for s in sites if s.optional})
    found = find_specs(python, search_path, tops)
    found.update({name: True for name in builtins})
    for s in sites:
        if not s.optional and not found.get(s.module.split(".")[0], True):
            raise errors.UnresolvedImport(
                f"{s.file}:{s.line}: `{s.module}` cannot be imported: it is not in the standard "
                f"library, the project, or its dependencies. Add the distribution that provides it to "
                f"[project] dependencies (or requirements.txt), or fix the name. If the import is "
                f"optional, guard it with try/except ImportError.")
    used = {s.module for s in sites} | {s.module.split(".")[0] for s in sites}
    include = set(ALWAYS_INCLUDE)
    for key, mods in DYNAMIC_RULES.items():
        if key in used:
            include.update(mods)
    include.update(s.module for s in sites if s.optional and found.get(s.module, False))
    codecs = {c for f in files if f.suffix == ".py" for c in codec_names(f)}
    codec_found = find_specs(python, [], [f"encodings.{c}" for c in sorted(codecs)]) if codecs else {}
    include.update(m for m, ok in codec_found.items() if ok)
    return tuple(sorted(include))
