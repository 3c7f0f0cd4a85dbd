"""What every baseline shares: the input hash (Key), meta.json, logged commands, the host Python,
its tool venvs and the workload's dependencies, the workload staged as the Python baselines see it,
the cache entry of a built baseline, and the engine helpers (tags, FROM scratch images)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
import zlib
from pathlib import Path

from forge import errors
from forge.bench.measure import ProcessSpec
from forge.bench.model import LABELS, Variant, bench_cache, log_path
from forge.cache import file_lock, staging_dir
from forge.image.layer import GZIP_LEVEL
from forge.image.rootfs import images_dir
from forge.prepare import entry_source, runtime_dir, runtime_files
from forge.workload import Workload

RECIPE_VERSION = "2"   # bump when this module changes what it builds


def recipes_dir() -> Path:
    return images_dir() / "baselines"


class Key:
    def __init__(self, *parts: str):
        self._h = hashlib.sha256(RECIPE_VERSION.encode())
        self.add(*parts)

    def add(self, *texts: str) -> "Key":
        for text in texts:
            self._h.update(text.encode() + b"\0")
        return self

    def add_file(self, path: Path, rel: str | None = None) -> "Key":
        self._h.update((rel or path.name).encode() + b"\0" + path.read_bytes() + b"\0")
        return self

    def add_tree(self, root: Path, files: list[Path]) -> "Key":
        for f in sorted(files):
            self.add_file(f, str(f.relative_to(root)))
        return self

    def hex(self) -> str:
        return self._h.hexdigest()[:24]


def read_meta(d: Path) -> dict | None:
    try:
        return json.loads((d / "meta.json").read_text())
    except (OSError, ValueError):
        return None


def write_meta(d: Path, meta: dict) -> None:
    (d / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True))


def gzip_size(path: Path, level: int = GZIP_LEVEL) -> int:
    """Size of `path` gzip-compressed as forge compresses layers (streamed, nothing kept)."""
    co = zlib.compressobj(level, zlib.DEFLATED, 16 + zlib.MAX_WBITS, 9)
    total = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            total += len(co.compress(chunk))
    return total + len(co.flush())


def run_logged(cmd: list[str], log: Path, what: str, **kw) -> None:
    from forge.proc import run_killable

    with open(log, "ab") as fh:
        fh.write(f"\n$ {' '.join(map(str, cmd))}\n".encode())
        fh.flush()
        proc = run_killable([str(c) for c in cmd], stdout=fh, **kw)
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
        raise errors.BenchFailed(f"{what} failed (exit {proc.returncode}):\n{tail}\nFull log: {log}")


def host_python() -> Path:
    """FORGE_BENCH_PYTHON, else Debian's /usr/bin/python3 (the interpreter the slim image has)."""
    p = Path(os.environ.get("FORGE_BENCH_PYTHON") or "/usr/bin/python3")
    if not p.is_file():
        raise errors.BenchFailed(
            f"{p} does not exist: the CPython, Nuitka-default and PyInstaller baselines need this machine's "
            "glibc Python 3 (Debian: apt-get install python3 python3-venv python3-dev). Set "
            "FORGE_BENCH_PYTHON to another interpreter, or leave those baselines out with --variants.")
    return p


def python_version(python: Path) -> str:
    return subprocess.run([str(python), "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
                          capture_output=True, text=True, check=True).stdout.strip()


def tool_venv(name: str) -> Path:
    """A venv of the host Python with images/baselines/<name>/requirements.txt installed (cached)."""
    python = host_python()
    req = recipes_dir() / name / "requirements.txt" if name else None
    key = Key("venv", name, str(python), python_version(python))
    if req:
        key.add_file(req)
    final = bench_cache() / "venv" / f"{name or 'bare'}-{key.hex()}"
    with file_lock(final.with_name(final.name + ".lock")):
        if (final / "bin" / "python").exists() and read_meta(final):
            return final
        if final.exists():
            shutil.rmtree(final)
        log = log_path(f"venv-{name or 'bare'}")
        run_logged([python, "-m", "venv", final], log, f"creating a venv with {python}")
        try:
            if req:
                run_logged([final / "bin" / "python", "-m", "pip", "install", "--disable-pip-version-check",
                            "-r", req], log, f"pip install -r {req}")
        except BaseException:
            shutil.rmtree(final, ignore_errors=True)
            raise
        write_meta(final, {"python": str(python)})
    return final


def host_deps(w: Workload) -> Path | None:
    """The workload's requirements installed for the host Python (pip --target; cached)."""
    if not w.requirements:
        return None
    python = host_python()
    key = Key("deps", python_version(python), *w.requirements)
    if w.requirements_file:
        key.add_file(w.requirements_file)
    # as forge.deps does: a requirements.txt goes to pip as -r (its options and -r lines work)
    args = ["-r", str(w.requirements_file)] if w.requirements_file else list(w.requirements)
    final = bench_cache() / "deps" / key.hex()
    with file_lock(final.with_name(final.name + ".lock")):
        if read_meta(final):
            return final / "site"
        with staging_dir(final) as stage:
            venv = tool_venv("")
            run_logged([venv / "bin" / "python", "-m", "pip", "install", "--disable-pip-version-check",
                        "--no-compile", "--target", stage / "site", *args],
                       log_path("deps"), f"pip install {' '.join(args)}", cwd=w.project_dir)
            write_meta(stage, {"requirements": list(w.requirements)})
    return final / "site"


def workload_key(w: Workload) -> Key:
    k = Key("workload", w.module, str(w.attr), entry_source(w), *w.requirements, *w.include)
    k.add_tree(w.project_dir, w.source_files())
    k.add_tree(runtime_dir(), runtime_files())
    return k


def stage_workload(w: Workload, dest: Path) -> None:
    """dest/: the workload's files, forge_runtime/ (runtime/ copied) and forge_main.py."""
    dest.mkdir(parents=True, exist_ok=True)
    for f in w.source_files():
        if f.suffix != ".py":
            continue
        target = dest / f.relative_to(w.project_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, target)
    rt = runtime_dir()
    for f in runtime_files():
        target = dest / "forge_runtime" / f.relative_to(rt)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, target)
    (dest / "forge_main.py").write_text(entry_source(w))


def includes(w: Workload, python: Path, search: list[Path]) -> tuple[str, ...]:
    """The modules forge would include explicitly (dynamic imports), computed for `python`."""
    from forge import analysis

    return analysis.analyse(w.source_files(), python, search)


def has_image(client, tag: str) -> bool:
    from docker.errors import ImageNotFound

    try:
        client.images.get(tag)
        return True
    except ImageNotFound:
        return False


def drop_other_tags(client, tag: str) -> None:
    """Remove this bench image's older builds (same repository, other tags) from the engine."""
    repo = tag.rpartition(":")[0]
    for image in client.images.list(name=repo):
        for t in image.tags:
            if t.rpartition(":")[0] == repo and t != tag:
                try:
                    client.images.remove(t)
                except Exception:  # noqa: BLE001 - in use by a container, or already gone: keep it
                    pass


def scratch_spec(app_dir: Path, variant: str):
    """The FROM scratch image of a baseline. The label keeps its image ID apart from other images with
    the same files (a floor image built by a test is otherwise identical, and removing it by ID would
    remove the bench's tag too)."""
    from forge.image.build import ImageSpec

    return ImageSpec(app_dir=app_dir, labels={"org.forge.bench.variant": variant})


def load_scratch_image(client, app_dir: Path, tag: str, variant: str) -> None:
    from forge.image.build import build_image
    from forge.publish import DaemonPublisher

    DaemonPublisher(tag, client=client).publish(build_image(scratch_spec(app_dir, variant)))


def scratch_sizes(app_dir: Path, variant: str) -> tuple[int, int]:
    from forge.image.build import build_image

    image = build_image(scratch_spec(app_dir, variant))
    return image.compressed_size, image.uncompressed_size


def _cached_build(name: str, key: str, build, rebuild: bool) -> tuple[Path, dict, bool]:
    """Run build(stage) -> meta into bench/<name>/<key>/ unless cached; (dir, meta, was_cached)."""
    final = bench_cache() / name / key
    with file_lock(final.with_name(final.name + ".lock")):
        meta = read_meta(final)
        if meta and not rebuild:
            return final, meta, True
        started = time.monotonic()
        with staging_dir(final) as stage:
            meta = build(stage)
            meta.setdefault("build_seconds", round(time.monotonic() - started, 2))
            meta["key"] = key
            write_meta(stage, meta)
    return final, meta, False


def _variant_from(name: str, d: Path, meta: dict, cached: bool, process: ProcessSpec, image: str | None,
                  notes: dict) -> Variant:
    return Variant(name, LABELS[name], image=image, size_compressed=meta["size_compressed"],
                   size_uncompressed=meta["size_uncompressed"], build_seconds=meta["build_seconds"],
                   build_cached=cached, process=process, notes=notes)


def scratch_variant(name: str, d: Path, meta: dict, cached: bool, tag: str, client, process_note: str) -> Variant:
    """A FROM scratch baseline whose d/app/app is the server: its image loaded (unless the engine has
    it from this very cache entry) and the Variant that runs d/app/app on the host."""
    if client is not None and (not has_image(client, tag) or not cached):
        load_scratch_image(client, d / "app", tag, name)
        drop_other_tags(client, tag)
    v = _variant_from(name, d, meta, cached, ProcessSpec((str(d / "app" / "app"),)),
                      tag if client else None,
                      {"process": process_note, "image": "FROM scratch + forge base layer"})
    v.reload = (lambda: load_scratch_image(client, d / "app", tag, name)) if client else None
    return v
