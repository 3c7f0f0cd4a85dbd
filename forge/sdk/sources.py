"""Pinned, sha256-verified source tarballs for the SDK, and how to get them offline.

Each source is pinned to one exact file by its sha256. forge tries the file in its cache, then the
upstream URL (only where the upstream file is byte-identical to the pin), then Debian's source
archive through the machine's own apt configuration (`apt-get source --download-only`), which
returns the pristine upstream tarball as the `.orig` file. No mirror host is named here: the apt
route derives everything from /etc/apt.
"""

from __future__ import annotations

import hashlib
import re
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
    suite: str = ""      # the Debian suite whose source index carries the pinned file
    upstream_url: str | None = None  # only where the upstream file is identical to the pin

    @property
    def env_var(self) -> str:
        return f"{self.name.upper().replace('-', '_')}_TARBALL"


# The libraries every Python version shares. `suite` is the Debian suite whose source index lists
# the pinned .orig (refreshed 2026-12-02; docs/sdk.md, "Sources"): forge adds that suite to its
# private apt configuration, on the archive the machine already uses.
LIBRARIES: tuple[Source, ...] = (
    Source("zlib", "1.3.2", "zlib_1.3.dfsg+really1.3.2.orig.tar.gz",
           "7b6903eb019983987b7112eccf90f1703f1c6c0e0cede36564bf611d19ca579d", "Zlib", "zlib",
           suite="forky"),
    Source("bzip2", "1.0.8", "bzip2_1.0.8.orig.tar.gz",
           "ab5a03176ee106d3f0fa90e381da478ddae405918153cca248e682cd0c4a2269", "bzip2-1.0.6", "bzip2",
           suite="trixie"),
    Source("xz", "5.8.4", "xz-utils_5.8.4.orig.tar.xz",
           "4ce24038fd4221e0d13bc1a2de7a4db56e90b92b3bf75321f6c14be73f65de4b", "0BSD", "xz-utils",
           suite="forky"),
    Source("libffi", "3.5.2", "libffi_3.5.2.orig.tar.gz",
           "dd19253d3007f366319a51d248a40c9e5fcace4498cbea990b566291844e4e30", "MIT", "libffi",
           suite="forky"),
    Source("sqlite", "3.53.4", "sqlite3_3.53.4.orig.tar.xz",
           "05366adc8ee80c6b1faa71285b49d133c2121238ca58934b077fdeb95934abd4", "blessing", "sqlite3",
           suite="forky"),
    Source("util-linux", "2.42.4", "util-linux_2.42.4.orig.tar.xz",
           "fbd62a100ab7bb8746ba0661255c3c48185b1e9021507c624da01fbc696330ec", "BSD-3-Clause",
           "util-linux", suite="forky"),
    # 3.5 is OpenSSL's current LTS line (supported to 2030). 3.5.9 is indexed but its file is not
    # served by the archive this machine reaches; 3.5.7 is the newest 3.5 that is.
    Source("openssl", "3.5.7", "openssl_3.5.7.orig.tar.gz",
           "a8c0d28a529ca480f9f36cf5792e2cd21984552a3c8e4aa11a24aa31aeac98e8", "Apache-2.0", "openssl",
           suite="trixie"),
    # Linked into workloads in place of musl's malloc (docs/sdk.md, "Allocator").
    # No mimalloc 3.x .orig is served by the archive here (every indexed one answers 404), so the
    # allocator stays on 2.0.9 (docs/sdk.md, "Sources").
    Source("mimalloc", "2.0.9", "mimalloc_2.0.9+ds.orig.tar.xz",
           "cbc9d207ff105ad1f0cb739c378076143a6452b8d0624309cea0abfb040e972b", "MIT", "mimalloc",
           suite="bookworm"),
)

# CPython per supported minor version, each at its newest patch release: the version knob picks one.
# 3.12 is not offered: no suite of Debian's archive carries a python3.12 source (Debian went from
# 3.11 to 3.13), and no other route to a pinned 3.12 tarball is reachable here (docs/sdk.md).
# 3.11 is dropped: its newest release's source is not reachable either, and 3.11.2 lacks the fixes.
CPYTHON: dict[str, Source] = {
    # The newest patch releases whose .orig the archive serves here: 3.13.18 and 3.14.8-3.14.10 are
    # indexed but answer 404. 3.14.7 is no longer indexed but is still in the pool (sha256 from its
    # .dsc, python3.14_3.14.7-1), which the pool route reaches.
    "3.13": Source("cpython", "3.13.15", "python3.13_3.13.15.orig.tar.xz",
                   "1e66a7945a48390ee4c2a4268a0e4185884059a13c4aab6d148aa208deea4a76", "PSF-2.0",
                   "python3.13", suite="forky"),
    "3.14": Source("cpython", "3.14.7", "python3.14_3.14.7.orig.tar.xz",
                   "3b48dac8fb59f62eaa67ac83c1eb12bda1b7a08406dd286e252c11a66be27f81", "PSF-2.0",
                   "python3.14", suite="sid"),
}
DEFAULT_PYTHON = "3.13"

# The wasm target's host interpreter only (forge/sdk/wasm-host/, docs/wasm.md): Nuitka emits C for
# the interpreter that runs it, and the newest wasm32-wasi libpython reachable is 3.11.8, so the
# wasm build runs under a 3.11 SDK. Nothing of it ships; native builds cannot select it.
WASM_HOST_PYTHON = "3.11"
WASM_HOST: dict[str, Source] = {
    "3.11": Source("cpython", "3.11.2", "python3.11_3.11.2.orig.tar.gz",
                   "2411c74bda5bbcfcddaf4531f66d1adc73f247f529aee981b029513aefdbf849", "PSF-2.0",
                   "python3.11", suite="bookworm",
                   upstream_url="https://www.python.org/ftp/python/3.11.2/Python-3.11.2.tgz"),
}


def supported_versions() -> str:
    return ", ".join(f"{m} ({s.version})" for m, s in CPYTHON.items())


def cpython_source(version: str) -> Source:
    """Accepts "3.13" or the exact pinned "3.13.15" (and the wasm host's 3.11, for forge itself)."""
    for minor, src in (*CPYTHON.items(), *WASM_HOST.items()):
        if version in (minor, src.version):
            return src
    _unknown(version)


def check_selectable(version: str) -> str:
    """The version a user asked for, if native builds and `forge toolchain` offer it."""
    if any(version in (m, s.version) for m, s in CPYTHON.items()):
        return version
    _unknown(version)


def _unknown(version: str):
    dropped = (" forge no longer builds 3.11: the newest 3.11 security release's source is not "
               "reachable, and 3.11.2 lacks three years of fixes." if version.startswith("3.11") else "")
    raise errors.UnknownPythonVersion(
        f"Python {version!r} is not a version forge has pinned sources for. Supported: "
        f"{supported_versions()}.{dropped} Pass one of those with --python (or [tool.forge] "
        f"python = \"3.13\").")


def python_for_requirement(requires_python: str, where: str) -> str:
    """The SDK version a `[project] requires-python` spec selects."""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    try:
        spec = SpecifierSet(requires_python)
    except InvalidSpecifier:
        raise errors.ConfigError(
            f"requires-python = {requires_python!r} in {where} is not a valid version specifier "
            f"(PEP 440, e.g. \">=3.13\"). Fix it and build again.") from None
    fits = [m for m, s in CPYTHON.items() if spec.contains(s.version)]
    if not fits:
        raise errors.RequiresPythonUnsatisfiable(
            f"requires-python = {requires_python!r} in {where} excludes every Python forge can "
            f"build: {supported_versions()}. Widen requires-python to include one of them, or pass "
            f"--python to choose one explicitly.")
    # The default when it satisfies the spec (">=3.11" builds on the default, as a user expects),
    # otherwise the newest version that does (">=3.14" builds on 3.14).
    if DEFAULT_PYTHON in fits:
        return DEFAULT_PYTHON
    return max(fits, key=lambda m: tuple(int(x) for x in m.split(".")))


def select_python(cli: str | None, tool: object, requires_python: str | None, where: str) -> str:
    """First match wins: --python, then [tool.forge] python, then [project] requires-python (the
    default if it satisfies the spec, else the newest supported version that does), then the
    default."""
    if cli:
        return check_selectable(cli)
    if tool is not None:
        if not isinstance(tool, str):
            raise errors.ConfigError(
                f"[tool.forge] python = {tool!r} in {where} must be a string (quote it: "
                f"python = \"{tool}\").")
        return check_selectable(tool)
    if requires_python:
        return python_for_requirement(requires_python, where)
    return DEFAULT_PYTHON


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


def _stanzas(deb822: str) -> list[dict[str, str]]:
    """The `Types: deb` stanzas of a deb822 sources file, as field dicts (comments dropped)."""
    out = []
    for block in deb822.split("\n\n"):
        fields = dict(line.split(":", 1) for line in block.splitlines()
                      if ":" in line and not line.startswith(("#", " ")))
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        if "deb" in fields.get("Types", "").split() and fields.get("URIs"):
            out.append(fields)
    return out


_ONE_LINE = re.compile(r"^deb\s+(?:\[(?P<opts>[^\]]*)\]\s+)?(?P<uri>\S+)\s+(?P<suite>\S+)\s*(?P<comps>.*)$")


def _one_line_stanzas(text: str) -> list[dict[str, str]]:
    """`deb [options] URI suite components...` lines, in the deb822 field names."""
    out = []
    for line in text.splitlines():
        m = _ONE_LINE.match(line.split("#", 1)[0].strip())
        if not m:
            continue
        opts = dict(o.split("=", 1) for o in (m["opts"] or "").split() if "=" in o)
        st = {"URIs": m["uri"], "Suites": m["suite"], "Components": m["comps"].strip() or "main"}
        if "signed-by" in opts:
            st["Signed-By"] = opts["signed-by"]
        out.append(st)
    return out


def source_stanzas(machine: list[dict[str, str]], suites: list[str]) -> str:
    """deb-src stanzas for the machine's own archives, each with its own suites plus the pinned
    sources' suites: a `*-security` suite goes to the archive that already serves a security
    suite, any other suite to the archives that serve the rest. No host is named: the URIs, keys
    and components are the machine's."""
    blocks = []
    for st in machine:
        own = st.get("Suites", "").split()
        security = any(x.endswith("-security") for x in own)
        extra = [x for x in suites if x.endswith("-security") == security and x not in own]
        fields = {"Types": "deb-src", "URIs": st["URIs"], "Suites": " ".join(own + extra),
                  "Components": st.get("Components", "main")}
        if st.get("Signed-By"):
            fields["Signed-By"] = st["Signed-By"]
        blocks.append("\n".join(f"{k}: {v}" for k, v in fields.items()))
    return "\n\n".join(blocks) + "\n"


def _apt_config(cache: Path, suites: list[str]) -> list[str]:
    """apt-get options for a private configuration whose deb-src entries are twins of the
    machine's own deb entries, widened to the suites that carry the pins. The system's apt
    configuration is read, never changed; the source lists go under forge's cache."""
    conf = cache / "apt"
    parts = conf / "sources.list.d"
    (conf / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    parts.mkdir(exist_ok=True)
    system = Path("/etc/apt/sources.list.d")
    machine: list[dict[str, str]] = []
    for f in sorted(system.glob("*.sources")) if system.is_dir() else []:
        machine += _stanzas(f.read_text())
    for f in [Path("/etc/apt/sources.list"), *(sorted(system.glob("*.list")) if system.is_dir() else [])]:
        if f.is_file():
            machine += _one_line_stanzas(f.read_text())
    text = source_stanzas(machine, sorted(set(suites)))
    target = parts / "forge.sources"
    if not target.is_file() or target.read_text() != text:
        target.write_text(text)
        for old in (conf / "lists").glob("*Sources*"):
            old.unlink()  # the suites changed: index them afresh
    (conf / "sources.list").write_text("")
    return ["-o", f"Dir::Etc::SourceList={conf / 'sources.list'}",
            "-o", f"Dir::Etc::SourceParts={parts}",
            "-o", f"Dir::State::Lists={conf / 'lists'}",
            "-o", "APT::Sandbox::User=root",
            # The index only locates a file whose sha256 forge already pins, so a Release file past
            # its Valid-Until (a snapshot or lagging mirror) is still good enough to find it.
            "-o", "Acquire::Check-Valid-Until=false"]


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


def pool_directories(showsrc: str, package: str) -> list[str]:
    """The pool directories (`Directory:`) that index records of `package` name."""
    dirs: list[str] = []
    for record in showsrc.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in record.splitlines()
                      if ": " in line and not line.startswith(" "))
        d = fields.get("Directory")
        if fields.get("Package") == package and d and d not in dirs:
            dirs.append(d)
    return dirs


def _showsrc(src: Source, opts: list[str]) -> str:
    try:
        return subprocess.run(["apt-cache", *opts, "showsrc", src.debian_package],
                              capture_output=True, check=False).stdout.decode("utf-8", "replace")
    except OSError:
        return ""


def _archive_uris(cache: Path) -> list[str]:
    text = (cache / "apt" / "sources.list.d" / "forge.sources").read_text()
    return [u for st in _stanzas(text.replace("Types: deb-src", "Types: deb")) for u in st["URIs"].split()]


def _try_pool(src: Source, showsrc: str, cache: Path, dest_dir: Path, log) -> Path | None:
    """The pool route: a suite's index moves on to a newer revision while the archive's pool still
    holds the pinned .orig. The file's address is the machine's archive URI, the package's pool
    directory from the index, and the pinned file name; the sha256 decides whether it is the one."""
    for uri in _archive_uris(cache):
        for directory in pool_directories(showsrc, src.debian_package):
            url = f"{uri.rstrip('/')}/{directory}/{src.filename}"
            log.write(f"[forge] pool route: {url}\n".encode())
            log.flush()
            try:
                with urllib.request.urlopen(url, timeout=60) as resp:
                    data = resp.read()
            except OSError:
                continue
            if hashlib.sha256(data).hexdigest() == src.sha256:
                path = dest_dir / src.filename
                path.write_bytes(data)
                return path
    return None


def _try_apt(src: Source, dest_dir: Path, cache: Path, log) -> Path | None:
    if shutil.which("apt-get") is None:
        return None
    opts = _apt_config(cache, [s.suite for s in (*LIBRARIES, *CPYTHON.values(), *WASM_HOST.values())
                               if s.suite])
    if not any((cache / "apt" / "lists").glob("*Sources*")):
        subprocess.run(["apt-get", *opts, "update"], stdout=log, stderr=log, check=False)
    path = dest_dir / src.filename
    showsrc = _showsrc(src, opts)
    # A security suite can index a version whose files its mirror does not serve, while an older
    # revision in another suite carries the identical .orig: each version carrying it is tried.
    versions = versions_carrying(showsrc, src)
    log.write(f"[forge] apt versions of {src.debian_package} carrying {src.filename}: "
              f"{versions or 'none'}\n".encode())
    log.flush()
    # Only the .orig is needed; Debian's own patch files may 404 on a mirror: ignore that.
    for version in versions:
        subprocess.run(["apt-get", *opts, "source", "--download-only",
                        f"{src.debian_package}={version}"],
                       cwd=dest_dir, stdout=log, stderr=log, check=False)
        if path.is_file():
            return path
    return _try_pool(src, showsrc, cache, dest_dir, log)


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
