"""The Debian slim images (cpython, nuitka): debootstrap's rootfs from this machine's apt sources,
the workload's /app added to it, `docker import`ed."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

from forge import console, errors
from forge.bench.baselines.common import (
    Key,
    _cached_build,
    _variant_from,
    drop_other_tags,
    gzip_size,
    has_image,
    read_meta,
    recipes_dir,
    run_logged,
    write_meta,
)
from forge.bench.model import Variant, bench_cache, log_path
from forge.cache import file_lock, staging_dir
from forge.workload import Workload

SUITE = "bookworm"


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


def docker_import(client, tar_path: Path, tag: str, changes: list[str]) -> None:
    repo, _, t = tag.rpartition(":")
    out = client.api.import_image_from_file(str(tar_path), repository=repo, tag=t, changes=changes)
    text = out if isinstance(out, str) else (out.decode(errors="replace") if isinstance(out, bytes) else str(out))
    if "error" in text.lower() and not has_image(client, tag):
        raise errors.DaemonRejectedImage(f"the Docker engine refused to import {tar_path} as {tag}: {text[-500:]}")
    if not has_image(client, tag):
        raise errors.DaemonRejectedImage(f"docker import of {tar_path} as {tag} left no image: {text[-500:]}")


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
