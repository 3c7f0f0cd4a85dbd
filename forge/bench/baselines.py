"""The variants forge is compared against, built here, offline, and cached on disk.

Recipes live in images/baselines/ (the debootstrap script, pinned tool requirements); this module
runs them. Every built baseline is cached under <forge cache>/bench/ in a directory named by a hash
of all of its inputs (recipe files, workload sources, forge_runtime, tool pins, host Python), with
meta.json recording its sizes and how long it took to build. Its image is put into the Docker
engine under a tag carrying that hash, so an unchanged baseline is neither rebuilt nor reloaded.

  cpython      Debian bookworm slim rootfs (debootstrap minbase + python3, slimmed as
               python:3.11-slim is) + /app (workload, forge_runtime copy, .pyc), `docker import`ed;
               CMD python3 -m forge_runtime MODULE:ATTR
  nuitka       `nuitka --standalone` (no other flags) with this machine's Debian Python (glibc,
               dynamic) -> the .dist directory in /app of the same slim rootfs, `docker import`ed
  pyinstaller  `pyinstaller --onefile`, made static by `staticx`, alone in a FROM scratch image
               (forge's image writer and base layer)
  floor        images/floor/floor.c (forge.image.floor.build_floor), FROM scratch the same way
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from forge import console, errors
from forge.bench.measure import BENCH_ENV, ProcessSpec
from forge.cache import cache_root, file_lock, staging_dir
from forge.image.layer import GZIP_LEVEL
from forge.image.rootfs import images_dir
from forge.prepare import entry_source, runtime_dir, runtime_files
from forge.workload import Workload

RECIPE_VERSION = "2"   # bump when this module changes what it builds
SUITE = "bookworm"


def bench_cache() -> Path:
    return cache_root() / "bench"


def recipes_dir() -> Path:
    return images_dir() / "baselines"


def log_path(name: str) -> Path:
    d = bench_cache() / "logs"
    d.mkdir(parents=True, exist_ok=True)
    return d / f"{name}.log"


# --- the built thing ----------------------------------------------------------------------------------
@dataclass
class Variant:
    """A variant ready to measure (or, with available=False, why it is not)."""
    name: str
    label: str
    available: bool = True
    reason: str | None = None
    image: str | None = None                 # tag in the Docker engine (None: no container runs)
    size_compressed: int | None = None       # bytes a registry stores (gzip layers + config + manifest)
    size_uncompressed: int | None = None     # sum of the uncompressed layer tars
    build_seconds: float | None = None       # sources -> image (one-time prerequisites excluded)
    build_cached: bool = False               # build_seconds was recorded when the cache entry was made
    process: ProcessSpec | None = None       # how it runs on the host (no container)
    in_process: Callable[[], dict] | None = None   # or a run measured inside forge (the wasm module)
    reload: Callable[[], None] | None = None       # puts the image back into the engine if it vanished
    notes: dict[str, str] = field(default_factory=dict)


def unavailable(name: str, label: str, reason: str) -> Variant:
    return Variant(name, label, available=False, reason=reason)


# --- hashing, meta -------------------------------------------------------------------------------------
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


# --- the host's Python (glibc, dynamic): what the Nuitka default and PyInstaller baselines use --------
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


# --- the workload as the Python-based baselines see it ------------------------------------------------
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


# --- Debian slim root filesystem ----------------------------------------------------------------------
def debian_source() -> tuple[str, str | None]:
    """(archive URI, keyring) for SUITE/main from this machine's apt sources, read at run time."""
    stanzas: list[dict[str, str]] = []
    for f in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for block in re.split(r"\n\s*\n", f.read_text()):
            fields: dict[str, str] = {}
            for line in block.splitlines():
                if line.startswith("#") or ":" not in line or line[:1].isspace():
                    continue
                k, _, v = line.partition(":")
                fields[k.strip().lower()] = v.strip()
            if fields:
                stanzas.append(fields)
    for s in stanzas:
        if (s.get("enabled", "yes").lower() != "no" and "deb" in s.get("types", "").split()
                and SUITE in s.get("suites", "").split() and "main" in s.get("components", "").split()):
            keyring = s.get("signed-by")
            return s["uris"].split()[0], (keyring if keyring and Path(keyring).is_file() else None)
    legacy = Path("/etc/apt/sources.list")
    if legacy.is_file():
        for line in legacy.read_text().splitlines():
            m = re.match(r"deb\s+(\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s+(.*)", line.strip())
            if m and m.group(3) == SUITE and "main" in m.group(4).split():
                return m.group(2), None
    raise errors.BenchFailed(
        f"no Debian {SUITE} main archive found in /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list; "
        f"the slim baseline image is built from it with debootstrap. Add a {SUITE} source to apt, or leave "
        "out the cpython and nuitka variants with --variants.")


def apt_proxy_env() -> dict[str, str]:
    """apt's own proxy settings (Acquire::http(s)::Proxy) for debootstrap's wget."""
    env = {}
    for scheme in ("http", "https"):
        out = subprocess.run(["apt-config", "dump", f"Acquire::{scheme}::Proxy"], capture_output=True, text=True)
        m = re.search(rf'^Acquire::{scheme}::Proxy "([^"]+)";', out.stdout, re.M)
        if m and m.group(1).upper() != "DIRECT":
            env[f"{scheme}_proxy"] = m.group(1)
    return env


def slim_rootfs() -> tuple[Path, dict]:
    """The slim rootfs tar (images/baselines/slim-rootfs.sh, cached): (path, meta)."""
    script = recipes_dir() / "slim-rootfs.sh"
    final = bench_cache() / "slim-rootfs" / Key("slim", SUITE).add_file(script).hex()
    with file_lock(final.with_name(final.name + ".lock")):
        meta = read_meta(final)
        if meta and (final / "rootfs.tar").is_file():
            return final / "rootfs.tar", meta
        if os.geteuid() != 0:
            raise errors.BenchFailed("building the slim baseline rootfs runs debootstrap, which needs root. Run "
                                     "forge bench as root once (the rootfs is cached), or leave out the cpython "
                                     "and nuitka variants with --variants.")
        if not shutil.which("debootstrap"):
            raise errors.BenchFailed("debootstrap is not installed; the slim baseline rootfs is built with it. "
                                     "Install it (apt-get install debootstrap), or leave out the cpython and "
                                     "nuitka variants with --variants.")
        mirror, keyring = debian_source()
        console.info(f"building the Debian {SUITE} slim rootfs with debootstrap (once; cached in {final.parent})")
        started = time.monotonic()
        with staging_dir(final) as stage:
            run_logged(["bash", script, stage / "rootfs.tar", mirror] + ([keyring] if keyring else []),
                       log_path("slim-rootfs"), "debootstrap of the slim rootfs",
                       env={**os.environ, **apt_proxy_env()})
            out = subprocess.run(["tar", "-xOf", stage / "rootfs.tar", "./var/lib/dpkg/status"],
                                 capture_output=True, text=True)
            pyver = re.search(r"Package: python3\.\d+-minimal\n(?:.+\n)*?Version: (\S+)", out.stdout)
            meta = {"build_seconds": round(time.monotonic() - started, 2), "suite": SUITE,
                    "size": (stage / "rootfs.tar").stat().st_size,
                    "python3_package": pyver.group(1) if pyver else None}
            write_meta(stage, meta)
    return final / "rootfs.tar", meta


def _add_tree(tar: tarfile.TarFile, src: Path, arcroot: str) -> None:
    """src/ into the tar as arcroot/, root-owned, mtime 0, executables 0755 and the rest 0644."""
    def add(path: Path, name: str) -> None:
        info = tar.gettarinfo(str(path), name)
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        info.mtime = 0
        if info.isdir():
            info.mode = 0o755
        elif info.isreg():
            info.mode = 0o755 if path.stat().st_mode & 0o111 else 0o644
        if info.isreg():
            with open(path, "rb") as fh:
                tar.addfile(info, fh)
        else:
            tar.addfile(info)
    add(src, arcroot)
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames.sort()
        for n in sorted(dirnames + filenames):
            p = Path(dirpath) / n
            add(p, f"{arcroot}/{p.relative_to(src).as_posix()}")


def slim_image_tar(rootfs: Path, app_dir: Path, out: Path) -> None:
    """rootfs.tar + app_dir as /app: the one layer `docker import` takes."""
    shutil.copyfile(rootfs, out)
    with tarfile.open(out, "a", format=tarfile.PAX_FORMAT) as tar:
        _add_tree(tar, app_dir, "./app")


# --- Docker --------------------------------------------------------------------------------------------
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


def docker_import(client, tar_path: Path, tag: str, changes: list[str]) -> None:
    repo, _, t = tag.rpartition(":")
    out = client.api.import_image_from_file(str(tar_path), repository=repo, tag=t, changes=changes)
    text = out if isinstance(out, str) else (out.decode(errors="replace") if isinstance(out, bytes) else str(out))
    if "error" in text.lower() and not has_image(client, tag):
        raise errors.DaemonRejectedImage(f"the Docker engine refused to import {tar_path} as {tag}: {text[-500:]}")
    if not has_image(client, tag):
        raise errors.DaemonRejectedImage(f"docker import of {tar_path} as {tag} left no image: {text[-500:]}")


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


# --- the baselines ---------------------------------------------------------------------------------------
LABELS = {
    "forge": "forge (static musl, scratch)",
    "cpython": "CPython 3.11 (Debian slim)",
    "nuitka": "Nuitka default (glibc, slim)",
    "pyinstaller": "PyInstaller+staticx (scratch)",
    "floor": "static C floor (scratch)",
    "wasm": "WASM",
}


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


def build_floor_variant(client, rebuild: bool = False) -> Variant:
    from forge.image.floor import FLOOR_CFLAGS, build_floor, floor_source

    key = Key("floor", "labelled", *FLOOR_CFLAGS).add_file(floor_source()).hex()

    def build(stage: Path) -> dict:
        build_floor(stage / "app")
        c, u = scratch_sizes(stage / "app", "floor")
        return {"size_compressed": c, "size_uncompressed": u}

    d, meta, cached = _cached_build("floor", key, build, rebuild)
    tag = f"forge-bench/floor:{key[:12]}"
    if client is not None and (not has_image(client, tag) or not cached):
        load_scratch_image(client, d / "app", tag, "floor")
        drop_other_tags(client, tag)
    v = _variant_from("floor", d, meta, cached, ProcessSpec((str(d / "app" / "app"),)),
                      tag if client else None,
                      {"process": "the floor binary run on the host", "image": "FROM scratch + forge base layer"})
    v.reload = (lambda: load_scratch_image(client, d / "app", tag, "floor")) if client else None
    return v


def build_pyinstaller_variant(w: Workload, client, rebuild: bool = False) -> Variant:
    python = host_python()
    venv = tool_venv("pyinstaller")
    deps = host_deps(w)
    key = workload_key(w).add("pyinstaller", "labelled", str(venv)).add_file(recipes_dir() / "pyinstaller" / "requirements.txt")
    key = key.add(str(deps)).hex()

    def build(stage: Path) -> dict:
        src = stage / "src"
        stage_workload(w, src)
        search = [src] + ([deps] if deps else [])
        inc = includes(w, python, search)
        log = log_path(f"pyinstaller-{w.name}")
        log.write_text("")
        cmd = [venv / "bin" / "pyinstaller", "--onefile", "--noconfirm", "--log-level", "WARN", "--name", "app",
               "--distpath", stage / "onefile", "--workpath", stage / "work", "--specpath", stage / "work"]
        for p in search:
            cmd += ["--paths", p]
        for m in inc:
            cmd += ["--hidden-import", m]
        run_logged(cmd + [src / "forge_main.py"], log, "pyinstaller --onefile")
        (stage / "app").mkdir()
        run_logged([venv / "bin" / "staticx", stage / "onefile" / "app", stage / "app" / "app"], log, "staticx")
        os.chmod(stage / "app" / "app", 0o755)
        shutil.rmtree(stage / "work")
        shutil.rmtree(stage / "onefile")
        c, u = scratch_sizes(stage / "app", "pyinstaller")
        return {"size_compressed": c, "size_uncompressed": u, "includes": list(inc)}

    d, meta, cached = _cached_build(f"pyinstaller-{w.name}", key, build, rebuild)
    tag = f"forge-bench/pyinstaller-{w.name}:{key[:12]}"
    if client is not None and (not has_image(client, tag) or not cached):
        load_scratch_image(client, d / "app", tag, "pyinstaller")
        drop_other_tags(client, tag)
    v = _variant_from("pyinstaller", d, meta, cached, ProcessSpec((str(d / "app" / "app"),)),
                      tag if client else None,
                      {"process": "the staticx binary run on the host (bootloaders + app: RSS summed)",
                       "image": "FROM scratch + forge base layer"})
    v.reload = (lambda: load_scratch_image(client, d / "app", tag, "pyinstaller")) if client else None
    return v


def _slim_changes(cmd: list[str], env: dict[str, str]) -> list[str]:
    changes = [f"CMD {json.dumps(cmd)}", "WORKDIR /app", "USER nobody", "EXPOSE 8080",
               "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "ENV LANG=C.UTF-8",
               "ENV PORT=8080"]
    changes += [f"ENV {k}={v}" for k, v in sorted(env.items())]
    return changes


def _slim_variant(name: str, w: Workload, client, rebuild: bool, key: str, make_app, cmd: list[str],
                  env: dict[str, str], process, notes: dict) -> Variant:
    rootfs, rootfs_meta = slim_rootfs()
    key = Key(key, str(rootfs)).hex()

    def build(stage: Path) -> dict:
        t0 = time.monotonic()
        make_app(stage)
        with tempfile.TemporaryDirectory(dir=stage) as tmp:
            tar = Path(tmp) / "image.tar"
            slim_image_tar(rootfs, stage / "app", tar)
            seconds = time.monotonic() - t0
            # measuring the compressed size is not part of the build (docker push compresses)
            return {"size_compressed": gzip_size(tar), "size_uncompressed": tar.stat().st_size,
                    "build_seconds": round(seconds, 2), "rootfs_build_seconds": rootfs_meta["build_seconds"]}

    d, meta, cached = _cached_build(f"{name}-{w.name}", key, build, rebuild)
    tag = f"forge-bench/{name}-{w.name}:{key[:12]}"
    def load() -> None:
        with tempfile.TemporaryDirectory(dir=bench_cache()) as tmp:
            tar = Path(tmp) / "image.tar"
            slim_image_tar(rootfs, d / "app", tar)
            docker_import(client, tar, tag, _slim_changes(cmd, env))

    if client is not None and (not has_image(client, tag) or not cached):
        load()
        drop_other_tags(client, tag)
    notes = {**notes, "image": f"Debian {SUITE} minbase + python3 (slim, {rootfs_meta['size'] / 2**20:.0f} MiB "
             f"rootfs, python3 {rootfs_meta.get('python3_package')}), docker import"}
    v = _variant_from(name, d, meta, cached, process(d), tag if client else None, notes)
    v.reload = load if client else None
    return v


def build_cpython_variant(w: Workload, client, rebuild: bool = False) -> Variant:
    python = host_python()
    deps = host_deps(w)
    key = workload_key(w).add("cpython", python_version(python), str(deps)).hex()

    def make_app(stage: Path) -> None:
        app = stage / "app"
        stage_workload(w, app)
        (app / "forge_main.py").unlink()
        if deps:
            shutil.copytree(deps, app / "site")
        # bytecode ahead of time, as a deployment would (the container user cannot write /app);
        # unchecked-hash: valid whatever the files' mtimes become in the image
        run_logged([python, "-m", "compileall", "-q", "--invalidation-mode", "unchecked-hash", app],
                   log_path(f"cpython-{w.name}"), "compileall")

    env = {"PYTHONPATH": "/app/site"} if deps else {}
    argv = ["python3", "-m", "forge_runtime", f"{w.module}:{w.attr}"]

    def process(d: Path) -> ProcessSpec:
        penv = {"PYTHONPATH": str(d / "app" / "site")} if deps else {}
        return ProcessSpec((str(python), *argv[1:]), cwd=d / "app", env=penv)

    return _slim_variant("cpython", w, client, rebuild, key, make_app, argv, env, process,
                         {"process": f"{python} -m forge_runtime on the host, in the same /app files",
                          "container": " ".join(argv)})


def build_nuitka_variant(w: Workload, client, rebuild: bool = False) -> Variant:
    python = host_python()
    venv = tool_venv("nuitka")
    deps = host_deps(w)
    key = workload_key(w).add("nuitka", str(venv), python_version(python), str(deps))
    key = key.add_file(recipes_dir() / "nuitka" / "requirements.txt").hex()

    def make_app(stage: Path) -> None:
        src = stage / "src"
        stage_workload(w, src)
        search = [src] + ([deps] if deps else [])
        inc = includes(w, python, search)
        log = log_path(f"nuitka-{w.name}")
        log.write_text("")
        out = stage / "out"
        out.mkdir()
        cmd = [venv / "bin" / "python", "-m", "nuitka", "--standalone", f"--output-dir={out}",
               "--output-filename=app", "--remove-output", "--assume-yes-for-downloads", "--no-progressbar",
               f"--jobs={os.cpu_count() or 2}"]
        cmd += [f"--include-module={m}" for m in inc]
        run_logged(cmd + [src / "forge_main.py"], log, "nuitka --standalone",
                   env={**os.environ, "PYTHONPATH": os.pathsep.join(map(str, search))}, cwd=out)
        shutil.move(str(out / "forge_main.dist"), stage / "app")
        shutil.rmtree(out)
        shutil.rmtree(src)

    def process(d: Path) -> ProcessSpec:
        return ProcessSpec((str(d / "app" / "app"),))

    return _slim_variant("nuitka", w, client, rebuild, key, make_app, ["/app/app"], {}, process,
                         {"process": "the .dist/app binary run on the host (same glibc as the image)",
                          "container": "/app/app"})


WASM_REQUEST = b'{"id": 1, "method": "GET", "path": "/"}\n'


def run_wasm_once(cwasm: Path) -> dict:
    """Cold start of the wasm module in this (warm) process: load the precompiled module, instantiate
    it, serve one `GET /` from stdin (JSON lines) and exit; the response must be status 200."""
    from forge.wasm.run import run

    t0 = time.perf_counter_ns()
    r = run(cwasm, stdin=WASM_REQUEST, env=dict(BENCH_ENV))
    t1 = time.perf_counter_ns()
    try:
        status = json.loads(r.stdout.splitlines()[0])["status"]
    except (IndexError, ValueError, KeyError, TypeError):
        status = None
    if r.trap or r.exit_code != 0 or status != 200:
        raise errors.BenchFailed(f"the wasm module answered {status!r} (exit {r.exit_code}, trap {r.trap}): "
                                 f"{r.stderr.decode(errors='replace')[-500:]}")
    return {"process_cold_start_ms": (t1 - t0) / 1e6}


def wasm_variant(w: Workload | None, src: Path, out_dir: Path, python: str | None, rebuild: bool = False,
                 cold_build: bool = True) -> Variant:
    """forge build --target wasm, when this forge has the target (forge/targets/wasm.py)."""
    if not (Path(__file__).resolve().parents[1] / "targets" / "wasm.py").is_file():
        return unavailable("wasm", LABELS["wasm"], "not available: this forge has no wasm target "
                           "(forge/targets/wasm.py)")
    if w is None:
        return unavailable("wasm", LABELS["wasm"], "SRC is a built output: pass --workload to build the wasm module")
    from forge.bench.run import timed_build
    from forge.build import options_from

    try:
        summary, build_s, cached = timed_build(options_from(src, target="wasm", output=out_dir / "wasm-build",
                                                            python=python, use_cache=not rebuild), cold_build)
    except errors.ForgeError as exc:
        return unavailable("wasm", LABELS["wasm"], f"not available for this workload: {exc.title}: {exc.message}")
    cwasm = Path(summary["precompiled"])
    return Variant("wasm", LABELS["wasm"], size_compressed=summary["module_size_gzip"],
                   size_uncompressed=summary["module_size"], build_seconds=build_s, build_cached=cached,
                   in_process=lambda: run_wasm_once(cwasm),
                   notes={"image": "no image: sizes are the .wasm module (gzip, raw)",
                          "process": "in forge's process with wasmtime (PyPI) already loaded: load app.cwasm, "
                                     "instantiate, serve one GET / over stdin (JSON lines), exit; no HTTP, so "
                                     "no RSS, throughput or container figures",
                          "preinitialized": str(summary.get("preinitialized"))})


BUILDERS = {
    "cpython": build_cpython_variant,
    "nuitka": build_nuitka_variant,
    "pyinstaller": build_pyinstaller_variant,
}
