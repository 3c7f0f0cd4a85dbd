"""`forge build`: config -> target -> artifact -> image -> publisher, in that order, one way.

Everything is written into a staging directory beside the output and renamed into place at the
end, so a failed build never leaves a partial output that looks good. The compiled artifact is
cached by a hash of every input, so an unchanged workload is not recompiled.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
import tokenize
from dataclasses import dataclass
from pathlib import Path

from forge import __version__, analysis, console, deps, errors, inclusion, output
from forge.cache import cache_root, file_lock, staging_dir
from forge.fsio import link_or_copy
from forge.config import source_date_epoch
from forge.sdk.layout import Sdk, find_sdk
from forge.sdk.sources import DEFAULT_PYTHON, select_python
from forge.targets import Artifact, BuildInputs, get_target
from forge.verify import CHECK_IMPORTS_ENV, PROBE_ENV
from forge.workload import Workload, resolve

OUTPUT_MARKER = output.MARKER  # every forge output dir has it: our right to replace the dir


@dataclass(frozen=True)
class BuildOptions:
    src: Path
    output: Path | None = None
    tag: str | None = None
    format: str = "oci"               # oci | docker-archive
    compression: str = "gzip"         # gzip | zstd
    load: bool = False
    python: str = DEFAULT_PYTHON
    target: str = "native"
    build_sdk: bool = False
    epoch: int = 0
    use_cache: bool = True            # False: recompile even if the build cache has this artifact
    verify: bool = True               # False (--no-verify): do not start the binary once (forge/verify.py)
    live: bool = True                 # False (--json): no live progress lines on the terminal


def options_from(src: Path, **cli) -> BuildOptions:
    """One options object from CLI values, [tool.forge] and the environment (CLI wins)."""
    w = resolve(src)
    tool = w.settings
    epoch = cli.pop("epoch", None)
    if epoch is None:
        epoch = source_date_epoch(tool)
    merged = {k: v for k, v in cli.items() if v is not None}
    merged["python"] = select_python(merged.get("python"), tool.get("python"), w.requires_python,
                                     str(w.project_dir / "pyproject.toml"))
    for key in ("format", "compression", "target", "tag"):
        if key not in merged and key in tool:
            if not isinstance(tool[key], str):
                raise errors.ConfigError(
                    f"[tool.forge] {key} = {tool[key]!r} must be a string (quote it: {key} = \"{tool[key]}\").")
            merged[key] = tool[key]
    for key, allowed in (("allocator", ("mimalloc", "musl")), ("builtins", ("all",))):
        if key in tool and tool[key] not in allowed:
            raise errors.ConfigError(
                f"[tool.forge] {key} = {tool[key]!r} is not a value forge knows; use one of "
                f"{', '.join(repr(a) for a in allowed)}, or remove the line for the default.")
    opts = BuildOptions(src=src, epoch=epoch, **merged)
    if opts.format not in ("oci", "docker-archive"):
        raise errors.ConfigError(f"--format must be oci or docker-archive, not {opts.format!r}.")
    if opts.compression not in ("gzip", "zstd"):
        raise errors.ConfigError(f"--compression must be gzip or zstd, not {opts.compression!r}.")
    return opts


def _runtime_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("forge_runtime")
    return Path(next(iter(spec.submodule_search_locations)))


def _runtime_on_path() -> Path:
    """A directory where `import forge_runtime` finds a copy of runtime/ (keyed by its content),
    so analysis and Nuitka see exactly the runtime that was hashed into the build key."""
    runtime = _runtime_dir()
    files = sorted(runtime.rglob("*.py"))
    h = hashlib.sha256()
    _hash_tree(h, runtime, files)
    root = cache_root() / "runtime" / h.hexdigest()[:16]
    with file_lock(root.with_name(root.name + ".lock")):
        if not (root / "forge_runtime" / "__init__.py").is_file():
            with staging_dir(root) as stage:
                shutil.copytree(runtime, stage / "forge_runtime", ignore=shutil.ignore_patterns("__pycache__"))
    return root


def _hash_tree(h, root: Path, files: list[Path]) -> None:
    for f in files:
        h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() + b"\0")


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


def _entry_script(w: Workload, build_dir: Path) -> Path:
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


def _work_root() -> Path:
    """This user's fixed compile directory (a fixed path keeps Nuitka's output reproducible)."""
    root = Path(tempfile.gettempdir()) / f"forge-build-{os.getuid()}"
    root.mkdir(mode=0o700, exist_ok=True)
    st = root.lstat()
    if not root.is_dir() or root.is_symlink() or st.st_uid != os.getuid():
        raise errors.OutputPathConflict(
            f"{root} is not a directory owned by you, so forge will not compile in it. Remove it "
            f"(or set TMPDIR to a private directory) and build again.")
    return root


def check_output(path: Path) -> None:
    if path.exists() and not (path.is_dir() and (path / OUTPUT_MARKER).is_file()):
        raise errors.OutputPathConflict(
            f"{path} already exists and is not a forge build output, so forge will not replace it. "
            f"Choose another path with -o, or move it away.")


def compile_workload(w: Workload, sdk: Sdk, target_name: str, log_dir: Path,
                     use_cache: bool = True) -> tuple[Artifact, deps.DependencyEnv, bool]:
    """Compile (or take from the cache) the workload's artifact. Returns (artifact, deps, cached)."""
    target = get_target(target_name)
    dep_env = deps.install(w, sdk, log_dir / "pip.log")
    runtime_root = _runtime_on_path()
    search = (w.project_dir, *dep_env.search_path, runtime_root)
    include = tuple(sorted(set(analysis.analyse(w.source_files(), sdk.python, list(search),
                                                tuple(m.name for m in dep_env.extensions)))
                           | set(w.include)))
    # A target that takes dependencies and the project whole (imports by string work) gets the
    # inclusion plan; the others keep following imports (e.g. wasm: its size is what Workers limits).
    plan = inclusion.plan(w, dep_env.site) if target.whole_project else inclusion.Inclusion()
    # What the dependencies' tree carries is not compiled again (nor followed) by Nuitka.
    include = tuple(i for i in include if not inclusion._excluded(i, plan.bytecode))
    tree, tree_info = None, {}
    if plan.bytecode:
        dists_key = hashlib.sha256(b"".join(r.read_bytes() for r in
                                            sorted(dep_env.site.glob("*.dist-info/RECORD")))).hexdigest()
        tree, tree_info = inclusion.bytecode_tree(plan, dep_env.site, sdk, dists_key)

    h = hashlib.sha256()
    h.update(json.dumps({"forge": __version__, "sdk": sdk.manifest["key"], "target": target.fingerprint(),
                         "module": w.module, "attr": w.attr, "include": include, "whole": plan.key(),
                         "deps": [(d.name, d.version) for d in dep_env.distributions]}).encode())
    if dep_env.site:  # RECORD lists every installed file's hash: a changed local dependency shows
        for record in sorted(dep_env.site.glob("*.dist-info/RECORD")):
            h.update(record.read_bytes())
    _hash_tree(h, w.project_dir, w.source_files())
    h.update(runtime_root.name.encode())  # the runtime copy is keyed by its content
    key = h.hexdigest()
    final = cache_root() / "builds" / key[:24]
    with file_lock(final.with_name(final.name + ".lock")):
        meta = final / "artifact.json"
        if use_cache and meta.is_file():
            m = json.loads(meta.read_text())
            return Artifact(final / m["file"], m["target"], m["size"], m["details"]), dep_env, True
        with staging_dir(final) as stage:
            # A fixed work path and hash seed: Nuitka's output is then bit-identical run to run.
            work = _work_root() / key[:24]
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir()
            inputs = BuildInputs(w, sdk, _entry_script(w, work), search,
                                 include, log_dir / "nuitka.log",
                                 extensions=dep_env.extensions,
                                 nuitka_flags=tuple(plan.nuitka_flags()),
                                 keep_builtins=tuple(tree_info.get("builtins", ())))
            art = target.compile(inputs, work)
            # bin/ holds exactly what goes into the image's /app
            (stage / "bin").mkdir()
            shutil.move(str(art.path), stage / "bin" / art.path.name)
            for extra in target.companion_files(art):   # kept beside the artifact (package data, app.cwasm)
                shutil.move(str(art.path.parent / extra), stage / "bin" / extra)
            if tree is not None:     # the dependencies as bytecode (forge/inclusion.py)
                link_or_copy(tree, stage / "bin" / inclusion.SITE_DIR)
                (stage / "bin" / inclusion.SITE_DIR / ".forge-tree.json").unlink()
                art.details["bytecode_tree"] = {k: tree_info[k] for k in ("stdlib", "bytes", "skipped")}
            shutil.rmtree(work)
            rel = f"bin/{art.path.name}"
            (stage / "artifact.json").write_text(json.dumps(
                {"file": rel, "target": art.target, "size": art.size, "details": art.details}))
    return Artifact(final / rel, art.target, art.size, art.details), dep_env, False


def build(opts: BuildOptions) -> dict:
    started = time.monotonic()
    console.live = opts.live
    w = resolve(opts.src)
    out = (opts.output or Path("dist") / w.name).resolve()
    check_output(out)                       # before any work: never compile just to fail here
    target = get_target(opts.target)
    if opts.load and not target.makes_image:
        raise errors.ConfigError(f"--load loads an image into Docker; --target {target.name} builds "
                                 f"{target.product}, no image.")
    python = target.sdk_python(opts.python)
    if opts.build_sdk:
        from forge.sdk.builder import build_sdk
        sdk = build_sdk(python)
    else:
        sdk = find_sdk(python)
    log_dir = cache_root() / "logs" / f"build-{w.name}"
    log_dir.mkdir(parents=True, exist_ok=True)
    for f in log_dir.glob("*.log"):
        f.unlink()

    with console.steps(f"build {w.name}", 5) as bar:
        with bar.step("dependencies, imports and compile (Nuitka)"):
            artifact, dep_env, cached = compile_workload(w, sdk, opts.target, log_dir, opts.use_cache)
        # The target writes its output (image + SBOM, or module + summary) in its own steps.
        summary = target.write_output(artifact, w, out, sdk, dep_env, cached,
                                      opts=opts, log_dir=log_dir, step=bar.step)
    summary["build_seconds"] = round(time.monotonic() - started, 2)
    return summary
