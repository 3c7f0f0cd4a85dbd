"""`forge build`: config -> target -> artifact -> image -> publisher, in that order, one way.

Everything is written into a staging directory beside the output and renamed into place at the
end, so a failed build never leaves a partial output that looks good. The compiled artifact is
cached by a hash of every input, so an unchanged workload is not recompiled.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from forge import __version__, console, deps, errors, inclusion, output
from forge.cache import cache_root, file_lock, staging_dir
from forge.fsio import link_or_copy
from forge.config import source_date_epoch
from forge.sdk.layout import Sdk, find_sdk
from forge.sdk.sources import DEFAULT_PYTHON, select_python
from forge.targets import Artifact, BuildInputs, get_target
from forge.workload import Workload, resolve
from forge.prepare import entry_script, hash_tree, prepare

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
    # the Workload options_from resolved, handed on so one build resolves it once
    workload: Workload | None = field(default=None, compare=False, repr=False)


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
    opts = BuildOptions(src=src, epoch=epoch, workload=w, **merged)
    if opts.format not in ("oci", "docker-archive"):
        raise errors.ConfigError(f"--format must be oci or docker-archive, not {opts.format!r}.")
    if opts.compression not in ("gzip", "zstd"):
        raise errors.ConfigError(f"--compression must be gzip or zstd, not {opts.compression!r}.")
    return opts


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
    prepared = prepare(w, sdk, log_dir / "pip.log")
    dep_env, runtime_root, search, include = (prepared.deps, prepared.runtime_root, prepared.search_path,
                                              prepared.include)
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
    hash_tree(h, w.project_dir, w.source_files())
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
            inputs = BuildInputs(w, sdk, entry_script(w, work), search,
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
    w = opts.workload or resolve(opts.src)
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
