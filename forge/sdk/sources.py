"""Pinned, sha256-verified source tarballs for the SDK, and how to get them offline.

Each source is pinned to one exact file by its sha256. forge tries the file in its cache, then the
upstream URL (only where the upstream file is byte-identical to the pin), then Debian's source
archive through the machine's own apt configuration (`apt-get source --download-only`), which
returns the pristine upstream tarball as the `.orig` file. No mirror host is named here: the apt
route derives everything from /etc/apt.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from forge import errors
from forge.cache import atomic_write_bytes, sha256_file


@dataclass(frozen=True)
class Source:
    name: str            # our name, also the recipe's env var prefix (NAME_TARBALL)
    version: str
    filename: str        # the exact file we pin (Debian's orig name where that is the route)
    sha256: str
    license: str         # SPDX id, for the SBOM
    debian_package: str  # source package that carries the file as its .orig
    upstream_url: str | None = None  # only where the upstream file is identical to the pin

    @property
    def env_var(self) -> str:
        return f"{self.name.upper().replace('-', '_')}_TARBALL"


# The libraries every Python version shares.
LIBRARIES: tuple[Source, ...] = (
    Source("zlib", "1.2.13", "zlib_1.2.13.dfsg.orig.tar.bz2",
           "71feb7947e3c00ef125f83b79a4e529bde31171e5babe48b391f06758d1ab0a1", "Zlib", "zlib"),
    Source("bzip2", "1.0.8", "bzip2_1.0.8.orig.tar.gz",
           "ab5a03176ee106d3f0fa90e381da478ddae405918153cca248e682cd0c4a2269", "bzip2-1.0.6", "bzip2"),
    Source("xz", "5.4.1", "xz-utils_5.4.1.orig.tar.xz",
           "5d9827aa1875b21c288f78864bb26d2650b436ea8d2cad364e4921eb6266a5a5", "0BSD", "xz-utils"),
    Source("libffi", "3.4.4", "libffi_3.4.4.orig.tar.gz",
           "d66c56ad259a82cf2a9dfc408b32bf5da52371500b84745f7fb8b645712df676", "MIT", "libffi"),
    Source("sqlite", "3.40.1", "sqlite3_3.40.1.orig.tar.xz",
           "aaa776260ab4dc976db34aa7891819484c8676b5b2783123ebc6301e2ca5d655", "blessing", "sqlite3"),
    Source("util-linux", "2.38.1", "util-linux_2.38.1.orig.tar.xz",
           "60492a19b44e6cf9a3ddff68325b333b8b52b6c59ce3ebd6a0ecaa4c5117e84f", "BSD-3-Clause",
           "util-linux"),
    Source("openssl", "3.0.22", "openssl_3.0.22.orig.tar.gz",
           "67ebca7e50d17383028045486653492195b83db95f8558709701bb47b5c1ef81", "Apache-2.0", "openssl"),
    # Linked into workloads in place of musl's malloc (docs/sdk.md, "Allocator").
    Source("mimalloc", "2.0.9", "mimalloc_2.0.9+ds.orig.tar.xz",
           "cbc9d207ff105ad1f0cb739c378076143a6452b8d0624309cea0abfb040e972b", "MIT", "mimalloc"),
)

# CPython per supported minor version: the version knob picks one of these.
CPYTHON: dict[str, Source] = {
    "3.11": Source("cpython", "3.11.2", "python3.11_3.11.2.orig.tar.gz",
                   "2411c74bda5bbcfcddaf4531f66d1adc73f247f529aee981b029513aefdbf849", "PSF-2.0",
                   "python3.11",
                   upstream_url="https://www.python.org/ftp/python/3.11.2/Python-3.11.2.tgz"),
}
DEFAULT_PYTHON = "3.11"


def cpython_source(version: str) -> Source:
    """Accepts "3.11" or the exact pinned "3.11.2"."""
    for minor, src in CPYTHON.items():
        if version in (minor, src.version):
            return src
    known = ", ".join(f"{m} ({s.version})" for m, s in CPYTHON.items())
    raise errors.UnknownPythonVersion(
        f"Python {version!r} is not a version forge has pinned sources for. Supported: {known}. "
        f"Pass one of those with --python (or [tool.forge] python = ...).")


def sources_for(version: str) -> tuple[Source, ...]:
    return (*LIBRARIES, cpython_source(version))


def _verify(src: Source, path: Path) -> None:
    got = sha256_file(path)
    if got != src.sha256:
        raise errors.SourceChecksumMismatch(
            f"{path} does not match its pin: sha256 {got}, expected {src.sha256} ({src.name} "
            f"{src.version}). The file is corrupt or was tampered with; forge will not build from "
            f"it. Delete it (or run `forge toolchain clean --sources`) and build again to fetch a "
            f"fresh copy.")


def _try_upstream(src: Source, dest_dir: Path) -> Path | None:
    if not src.upstream_url:
        return None
    try:
        with urllib.request.urlopen(src.upstream_url, timeout=20) as resp:
            data = resp.read()
    except OSError:
        return None
    if hashlib.sha256(data).hexdigest() != src.sha256:
        return None  # a proxy's error page, a changed upstream file: try the next route
    path = dest_dir / src.filename
    path.write_bytes(data)
    return path


def _apt_config(cache: Path) -> list[str]:
    """apt-get options for a private configuration whose deb-src entries are twins of the
    machine's own deb entries. The system's apt configuration is read, never changed; the source
    lists go under forge's cache."""
    conf = cache / "apt"
    parts = conf / "sources.list.d"
    (conf / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    parts.mkdir(exist_ok=True)
    system = Path("/etc/apt/sources.list.d")
    deb822 = [f.read_text() for f in sorted(system.glob("*.sources"))] if system.is_dir() else []
    (parts / "forge.sources").write_text("\n\n".join(
        t.replace("Types: deb deb-src", "Types: deb-src").replace("Types: deb\n", "Types: deb-src\n")
        for t in deb822))
    one_line = []
    for f in [Path("/etc/apt/sources.list"), *(sorted(system.glob("*.list")) if system.is_dir() else [])]:
        if f.is_file():
            one_line += ["deb-src " + line.strip()[4:] for line in f.read_text().splitlines()
                         if line.strip().startswith("deb ")]
    (conf / "sources.list").write_text("\n".join(one_line) + "\n")
    return ["-o", f"Dir::Etc::SourceList={conf / 'sources.list'}",
            "-o", f"Dir::Etc::SourceParts={parts}",
            "-o", f"Dir::State::Lists={conf / 'lists'}",
            "-o", "APT::Sandbox::User=root"]


def versions_carrying(showsrc: str, src: Source) -> list[str]:
    """Versions of src.debian_package, in `apt-cache showsrc` output (deb822 records separated by
    blank lines), whose record lists the pinned file by its sha256."""
    versions: list[str] = []
    for record in showsrc.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in record.splitlines()
                      if ": " in line and not line.startswith(" "))
        version = fields.get("Version")
        if (fields.get("Package") == src.debian_package and version
                and f" {src.sha256} " in record and version not in versions):
            versions.append(version)
    return versions


def _apt_versions_carrying(src: Source, opts: list[str], log) -> list[str]:
    """A security suite can index a version whose files its mirror does not serve, while an older
    revision in the main suite carries the identical .orig: each version carrying it is tried."""
    try:
        out = subprocess.run(["apt-cache", *opts, "showsrc", src.debian_package],
                             capture_output=True, check=False).stdout.decode("utf-8", "replace")
    except OSError:
        out = ""
    versions = versions_carrying(out, src)
    log.write(f"[forge] apt versions of {src.debian_package} carrying {src.filename}: "
              f"{versions or 'none'}\n".encode())
    log.flush()
    return versions


def _try_apt(src: Source, dest_dir: Path, cache: Path, log) -> Path | None:
    if shutil.which("apt-get") is None:
        return None
    opts = _apt_config(cache)
    if not any((cache / "apt" / "lists").glob("*Sources*")):
        subprocess.run(["apt-get", *opts, "update"], stdout=log, stderr=log, check=False)
    path = dest_dir / src.filename
    # Only the .orig is needed; Debian's own patch files may 404 on a security mirror: ignore that.
    for version in _apt_versions_carrying(src, opts, log) or [None]:
        target = src.debian_package if version is None else f"{src.debian_package}={version}"
        subprocess.run(["apt-get", *opts, "source", "--download-only", target],
                       cwd=dest_dir, stdout=log, stderr=log, check=False)
        if path.is_file():
            return path
    return None


def fetch(src: Source, cache: Path, log) -> Path:
    """Return the verified tarball for `src`, fetching it into `cache/sources` if needed."""
    store = cache / "sources"
    store.mkdir(parents=True, exist_ok=True)
    final = store / src.filename
    if final.is_file():
        _verify(src, final)
        return final
    with tempfile.TemporaryDirectory(dir=store, prefix=".fetch-") as tmp:
        tmpdir = Path(tmp)
        got = _try_upstream(src, tmpdir) or _try_apt(src, tmpdir, cache, log)
        if got is None:
            raise errors.SourceUnavailable(
                f"could not get {src.filename} ({src.name} {src.version}): the upstream URL "
                f"{src.upstream_url or '(none pinned)'} is unreachable and `apt-get source "
                f"--download-only {src.debian_package}` did not produce it. Check network access to "
                f"your Debian archive, or place the file (sha256 {src.sha256}) in {store} yourself.")
        if sha256_file(got) != src.sha256:
            raise errors.SourceChecksumMismatch(
                f"the {src.name} {src.version} tarball Debian's archive returned ({src.filename}) has "
                f"sha256 {sha256_file(got)}, not the pinned {src.sha256}, so forge will not build from "
                f"it. Your apt sources may point at a different release than forge pins; check "
                f"/etc/apt/sources.list.d, or place the pinned file in {store} yourself.")
        atomic_write_bytes(final, got.read_bytes())
    return final
