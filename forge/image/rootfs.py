"""The base root filesystem every forge image starts from, made from images/ in the repository.

    /etc/passwd, /etc/group                 root, nobody, and nonroot (uid/gid 65532, as distroless)
    /etc/ssl/certs/ca-certificates.crt      certifi's cacert.pem, pinned in images/base.lock.json
    /home/nonroot                           nonroot's home, owned 65532:65532 (the only non-root entry)
    /tmp                                    1777

and, only when asked, /usr/share/zoneinfo as a layer of its own. The zone files come from the
`tzdata` PyPI package (pinned in pyproject.toml), not from the host's /usr/share/zoneinfo: the host's
copy changes with every Debian point release and is absent on other systems, so images built on two
machines would differ; the PyPI package is one exact version everywhere and is the same data
CPython's zoneinfo module falls back to. Its many identical zone files (aliases such as
Europe/Belfast = Europe/London) are stored once and hard-linked, as the host's copy does with links.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import stat
from functools import lru_cache
from pathlib import Path

from forge import errors
from forge.image.layer import Entry, sort_entries

CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
ZONEINFO = "/usr/share/zoneinfo"
NONROOT_UID = NONROOT_GID = 65532
NONROOT_HOME = "/home/nonroot"
# The shared layers (base, zoneinfo) always use this mtime, whatever the app's SOURCE_DATE_EPOCH: their
# bytes must be the same in every forge image so that registries and hosts store them once.
SHARED_LAYER_EPOCH = 0


def certifi_cacert(version: str) -> bytes:
    """certifi/cacert.pem of that exact certifi release, from its wheel on PyPI (via pip): what the
    base rootfs's CA bundle is pinned to (images/pin-ca-bundle.py writes it, the tests compare)."""
    import subprocess
    import sys
    import tempfile
    import zipfile

    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:",
                        "-d", tmp, f"certifi=={version}"], check=True)
        with zipfile.ZipFile(next(Path(tmp).glob("certifi-*.whl"))) as zf:
            return zf.read("certifi/cacert.pem")


def images_dir() -> Path:
    """images/ of the forge checkout; in an installed (non-editable) forge, the forge_images package
    pyproject.toml makes of it. FORGE_IMAGES_DIR overrides both."""
    env = os.environ.get("FORGE_IMAGES_DIR")
    if env:
        return Path(env)
    checkout = Path(__file__).resolve().parents[2] / "images"
    if (checkout / "base.lock.json").is_file():
        return checkout
    spec = importlib.util.find_spec("forge_images")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    raise errors.ConfigError(
        f"forge's image sources are missing: neither {checkout} nor the forge_images package exists. "
        "Reinstall forge, or set FORGE_IMAGES_DIR to a checkout's images/ directory.")


def base_lock() -> dict:
    return json.loads((images_dir() / "base.lock.json").read_text())


def ca_bundle() -> bytes:
    """The pinned CA bundle, checked against images/base.lock.json."""
    pin = base_lock()["ca-certificates"]
    path = images_dir() / pin["path"]
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise errors.SourceChecksumMismatch(
            f"the pinned CA bundle {path} is missing; restore it with `git checkout -- {path}` or re-pin it "
            "with images/pin-ca-bundle.py") from exc
    digest = hashlib.sha256(data).hexdigest()
    if digest != pin["sha256"]:
        raise errors.SourceChecksumMismatch(
            f"{path} has sha256 {digest}, but images/base.lock.json pins certifi {pin['version']} at "
            f"{pin['sha256']}. Restore the file (`git checkout -- {path}`) or re-pin it with "
            "images/pin-ca-bundle.py VERSION, which rewrites both.")
    return data


@lru_cache(maxsize=1)
def base_entries() -> tuple[Entry, ...]:
    """The base rootfs as layer entries (sorted, parents included)."""
    etc = images_dir() / "base" / "etc"
    entries = [
        Entry("etc/passwd", "file", 0o644, (etc / "passwd").read_bytes()),
        Entry("etc/group", "file", 0o644, (etc / "group").read_bytes()),
        Entry(CA_BUNDLE.lstrip("/"), "file", 0o644, ca_bundle()),
        Entry("home", "dir", 0o755),
        Entry(NONROOT_HOME.lstrip("/"), "dir", 0o755, uid=NONROOT_UID, gid=NONROOT_GID),
        Entry("tmp", "dir", 0o1777),
    ]
    return tuple(sort_entries(entries))


def tzdata_version() -> str:
    try:
        import tzdata
    except ImportError as exc:
        raise errors.ConfigError(
            "include_zoneinfo needs the `tzdata` package (a forge dependency): reinstall forge "
            "(`scripts/bootstrap.sh`) or `pip install tzdata`.") from exc
    return tzdata.IANA_VERSION


@lru_cache(maxsize=1)
def zoneinfo_entries() -> tuple[Entry, ...]:
    """/usr/share/zoneinfo from the tzdata package: TZif files and the .tab/.zi tables, without the
    package's Python files; a file identical to an earlier one (in sorted order) is a hard link."""
    tzdata_version()
    import tzdata

    root = Path(tzdata.__file__).resolve().parent / "zoneinfo"
    files: list[tuple[str, bytes]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        for name in filenames:
            if name == "__init__.py" or name.endswith((".pyc", ".pyo")):
                continue
            p = Path(dirpath) / name
            files.append((p.relative_to(root).as_posix(), p.read_bytes()))
    files.sort(key=lambda f: tuple(f[0].split("/")))
    prefix = ZONEINFO.lstrip("/")
    first: dict[bytes, str] = {}
    entries = []
    for rel, data in files:
        path = f"{prefix}/{rel}"
        key = hashlib.sha256(data).digest()
        if key in first:
            entries.append(Entry(path, "hardlink", 0o644, linkname=first[key]))
        else:
            first[key] = path
            entries.append(Entry(path, "file", 0o644, data))
    return tuple(sort_entries(entries))


def write_rootfs(dest: Path, include_zoneinfo: bool = False, *, skip: tuple[str, ...] = ()) -> None:
    """Materialise the base rootfs (and zoneinfo) under `dest` on disk, modes applied (for the
    Dockerfile.scratch route). Paths in `skip` (and what is under them) are left out."""
    entries = list(base_entries()) + (list(zoneinfo_entries()) if include_zoneinfo else [])
    write_entries(dest, entries, skip=skip)


def write_entries(dest: Path, entries, *, skip: tuple[str, ...] = ()) -> None:
    """Layer entries as files under `dest`, with their modes. Ownership is not applied: `docker build`
    COPY makes everything root-owned, and Dockerfile.scratch chowns the nonroot home itself."""
    dirs = []
    for e in sort_entries(list(entries)):
        if e.path in skip or any(e.path.startswith(s + "/") for s in skip):
            continue
        target = dest / e.path
        if e.kind == "dir":
            target.mkdir(parents=True, exist_ok=True)
            dirs.append((target, e.mode))
        elif e.kind == "file":
            target.write_bytes(e.data)
            os.chmod(target, stat.S_IMODE(e.mode))
        elif e.kind == "hardlink":
            os.link(dest / e.linkname, target)
        elif e.kind == "symlink":
            os.symlink(e.linkname, target)
    for target, mode in reversed(dirs):  # last, so a read-only mode never blocks writing the children
        os.chmod(target, mode & 0o7777)
