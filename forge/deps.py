"""The workload's dependencies, installed by the SDK's own pip into a cached directory.

The SDK interpreter is static, so pip accepts pure wheels (py3-none-any) and builds everything else
from its sdist. Those builds go through forge's compiler driver (forge/extensions): each extension
module becomes one relocatable object, moved out of the site dir and linked into the binary as a
built-in module. What cannot work is refused here, before Nuitka runs: a real shared object (a
build that bypassed the driver), a library the SDK does not have, a Rust extension.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from forge import errors, extensions, pip_python
from forge.cache import cache_root, file_lock, staging_dir
from forge.extensions import ExtensionModule
from forge.sdk.layout import Sdk
from forge.workload import Workload

INSTALL_VERSION = 2  # how install() builds the site dir; part of the cache key
NATIVE_SUFFIXES = (".so", ".pyd", ".dylib")


@dataclass(frozen=True)
class Distribution:
    name: str
    version: str
    license: str
    sdist_sha256: str | None = None   # set when forge built it from its sdist (SBOM)


@dataclass(frozen=True)
class DependencyEnv:
    site: Path | None                 # None when the workload has no dependencies
    distributions: tuple[Distribution, ...]
    extensions: tuple[ExtensionModule, ...] = ()   # built-in modules to link (forge/extensions)

    @property
    def search_path(self) -> list[Path]:
        return [self.site] if self.site else []


def _owner(site: Path, native: Path) -> str:
    rel = native.relative_to(site).as_posix()
    for record in site.glob("*.dist-info/RECORD"):
        if any(line.split(",", 1)[0] == rel for line in record.read_text().splitlines()):
            return record.parent.name[: -len(".dist-info")].rsplit("-", 1)[0]
    return rel.split("/", 1)[0]


def _license(meta: str) -> str:
    for key in ("License-Expression", "License"):
        m = re.search(rf"^{key}: (.+)$", meta, re.M)
        if m and m.group(1).strip() not in {"", "UNKNOWN"} and len(m.group(1)) < 80:
            return m.group(1).strip()
    classifiers = re.findall(r"^Classifier: License :: (?:OSI Approved :: )?(.+)$", meta, re.M)
    return classifiers[0] if classifiers else "NOASSERTION"


def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_distributions(site: Path, sdists: dict[str, str] | None = None) -> tuple[Distribution, ...]:
    dists = []
    for meta_file in sorted(site.glob("*.dist-info/METADATA")):
        meta = meta_file.read_text(errors="replace")
        name = re.search(r"^Name: (.+)$", meta, re.M).group(1).strip()
        version = re.search(r"^Version: (.+)$", meta, re.M).group(1).strip()
        dists.append(Distribution(name, version, _license(meta), (sdists or {}).get(_canon(name))))
    return tuple(dists)


def _source_built(report: Path) -> dict[str, str]:
    """{distribution: sdist sha256} for what pip built from an sdist (pip's --report)."""
    if not report.is_file():
        return {}
    out = {}
    for item in json.loads(report.read_text()).get("install", []):
        info = item.get("download_info") or {}
        url = info.get("url", "")
        if url.endswith(".whl") or "archive_info" not in info:
            continue
        sha = (info["archive_info"].get("hashes") or {}).get("sha256") or \
            (info["archive_info"].get("hash") or "sha256=").partition("=")[2]
        out[_canon(item["metadata"]["name"])] = sha or "NOASSERTION"
    return out


# Rust build backends: no Rust toolchain with the x86_64-unknown-linux-musl target is installed on
# forge's build machines, so these cannot be built; the message names the package that needs them.
RUST_BACKENDS = {"maturin", "setuptools-rust", "setuptools_rust", "puccinialin"}
RUST_ONLY_BINARY = {"maturin", "puccinialin"}
RUST_MARKERS = re.compile(r"(cargo|rustc)[^\n]*(not (be )?found|not installed|No such file)|"
                          r"can't find Rust compiler|requirement (maturin|puccinialin)\b|"
                          r"maturin failed", re.I)
PURE_ALTERNATIVES = {
    "pydantic-core": "pydantic<2 (1.x has a pure-Python wheel) with a FastAPI version that still "
                     "supports Pydantic v1, or a framework without pydantic such as Starlette",
    "orjson": "the standard library's json",
    "rpds-py": "nothing pure-Python provides rpds; use jsonschema<4.18, which does not need it",
    "cryptography": "nothing pure-Python: the standard library's hashlib/hmac/ssl cover hashing and TLS",
    "tiktoken": "nothing pure-Python",
    "jiter": "the standard library's json",
}


def _compiled_variants(report: Path, sdk: Sdk, env: dict, stage: Path, log: Path) -> list[str]:
    """Of the distributions pip installed from a pure wheel, those whose same version also has
    CPython wheels for x86_64 Linux (so the pure one is a fallback), asked of pip itself: a dry
    run for a manylinux/musllinux CPython of the SDK's version, binary only, no dependencies."""
    if not report.is_file():
        return []
    pure = {}
    for item in json.loads(report.read_text()).get("install", []):
        url = (item.get("download_info") or {}).get("url", "")
        if url.endswith("-none-any.whl"):
            pure[_canon(item["metadata"]["name"])] = item["metadata"]["version"]
    if not pure:
        return []
    major_minor = ".".join(sdk.version.split(".")[:2])
    tag = "cp" + major_minor.replace(".", "")
    probe = stage / "pip-platform-report.json"
    cmd = [str(sdk.python), "-m", "pip", "install", "--dry-run", "--ignore-installed", "--no-deps",
           "--only-binary=:all:", "--python-version", major_minor, "--implementation", "cp",
           "--abi", tag, "--platform", "manylinux2014_x86_64", "--platform", "musllinux_1_2_x86_64",
           "--report", str(probe), *(f"{n}=={v}" for n, v in sorted(pure.items()))]
    with open(log, "ab") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
    if proc.returncode != 0 or not probe.is_file():
        return []  # the probe is an optimisation: without an answer, keep the pure wheels
    compiled = [_canon(i["metadata"]["name"]) for i in json.loads(probe.read_text()).get("install", [])
                if not (i.get("download_info") or {}).get("url", "").endswith("-none-any.whl")]
    probe.unlink()
    return sorted(compiled)


def failed_builds(text: str) -> list[str]:
    """Distributions whose wheel build failed, in pip's words (not pip 25's summary line
    "Failed to build installable wheels for some pyproject.toml based projects")."""
    names = re.findall(r"^\s*Building wheel for ([\w.\-]+) \(.*\): finished with status 'error'|"
                       r"^Failed to build (?!installable wheels)([\w.\-]+)\s*$", text, re.M)
    return list(dict.fromkeys(a or b for a, b in names))


def _sdists_in_log(text: str) -> list[str]:
    """Distributions pip fetched as sdists, in order (`Downloading foo-1.0.tar.gz`)."""
    names = re.findall(r"(?:Downloading|Using cached|File was already downloaded) (?:\S*/)?"
                       r"([A-Za-z0-9_.]+?)-\d[^\s/]*\.(?:tar\.gz|zip|tar\.bz2)\b", text)
    return list(dict.fromkeys(_canon(n) for n in names))


def _read_events(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _failure(text: str, events: list[dict], log: Path) -> errors.ForgeError | None:
    """The one-paragraph error for a source build that failed, when forge knows its cause."""
    sdists = [n for n in _sdists_in_log(text) if n not in {_canon(b) for b in RUST_BACKENDS}]
    named = [_canon(n) for n in failed_builds(text)]
    rust = RUST_MARKERS.search(text) or any(n in {_canon(b) for b in RUST_BACKENDS} for n in named)
    if rust:
        # The package that needs Rust: the last sdist pip fetched before the failure that is not
        # a Rust build tool (pip prepares sdists one at a time, so that is the one that broke).
        pkg = sdists[-1] if sdists else (named[-1] if named else "a dependency")
        alt = PURE_ALTERNATIVES.get(pkg)
        return errors.RustExtensionDependency(
            f"{pkg} is a Rust extension (built with maturin or setuptools-rust), and building it "
            f"needs a Rust toolchain with the x86_64-unknown-linux-musl target (`rustup target add "
            f"x86_64-unknown-linux-musl`), which this machine does not have. Install one, or "
            + (f"replace {pkg} with {alt}." if alt else f"use a pure-Python alternative to {pkg}.")
            + f" pip's log: {log}")
    loads = re.search(r"^\s*import (\w+).*\n(?:.*\n){0,3}?\s*ImportError: Dynamic loading not supported", text, re.M)
    if loads or "ImportError: Dynamic loading not supported" in text:
        pkg = named[-1] if named else (sdists[-1] if sdists else "a dependency")
        mod = loads.group(1) if loads else "an extension module"
        return errors.NativeExtensionDependency(
            f"{pkg}'s build imports {mod} (a compiled extension module) in forge's build interpreter, "
            f"which is static and cannot load extension modules: cffi's out-of-line modules "
            f"(`ffi.set_source(...)` in a build script) need cffi's _cffi_backend at build time. "
            f"forge cannot build {pkg} yet; use a pure-Python alternative, or a version that ships a "
            f"pure wheel. pip's log: {log}")
    missing = [e for e in events if e.get("event") == "missing-library"]
    header = re.search(r"fatal error: ([\w./+-]+\.h(?:pp)?): No such file or directory", text)
    if missing or header:
        pkg = named[-1] if named else (sdists[-1] if sdists else "a dependency")
        if missing:
            libs = sorted({lib for e in missing for lib in e["libraries"]})
            what = f"the C librar{'y' if len(libs) == 1 else 'ies'} {', '.join('lib' + x for x in libs)}"
        else:
            what = f"the C header {header.group(1)} (a library forge's SDK does not have)"
        return errors.NativeLibraryMissing(
            f"{pkg} needs {what} to build its extension modules, and forge's SDK only provides "
            f"zlib, libffi, OpenSSL, sqlite, bz2, lzma and uuid as static musl libraries. Use a "
            f"version or an alternative of {pkg} that does not need it (many packages fall back to "
            f"pure Python when it is missing: check its build options), or vendor the library's "
            f"sources into the package's build. Nothing was written. pip's log: {log}")
    return None


def _needs_cffi_backend(text: str) -> bool:
    return "Dynamic loading not supported" in text and ("_cffi_backend" in text or "cffi" in text)


def _cffi_scratch(stage: Path) -> tuple[Path, ...]:
    return stage / "cffi-site", stage / "cffi-ext", stage / "cffi-python"


def _cffi_build_python(sdk: Sdk, env: dict, stage: Path, log: Path) -> Path | None:
    """The SDK interpreter relinked with cffi's _cffi_backend as a built-in, for builds that run
    cffi (out-of-line modules: `ffibuilder.compile()`, `cffi_modules=`). cffi is built from its
    sdist by the driver like any extension; the build environment pip makes for the package then
    installs the same cffi (from pip's wheel cache), whose Python code finds the built-in backend
    (BuiltinImporter comes before the path finder). None when cffi itself does not build."""
    cffi_site, ext_dir, prefix = _cffi_scratch(stage)
    with open(log, "ab") as fh:
        fh.write(b"\n[forge] an out-of-line cffi build: building cffi's backend into the build interpreter\n")
        proc = subprocess.run([str(sdk.python), "-m", "pip", "install", "--no-compile", "--target",
                               str(cffi_site), "--root-user-action=ignore", "--no-binary", "cffi", "cffi"],
                              stdout=fh, stderr=subprocess.STDOUT, env=env)
    if proc.returncode != 0:
        return None
    modules = extensions.collect(cffi_site, ext_dir, lambda p: "cffi")
    if not any(m.name == "_cffi_backend" for m in modules):
        return None
    return extensions.build_interpreter(sdk, tuple(modules), prefix)


# Requirements that point at something mutable (a local path, a VCS checkout, an editable install)
# are reinstalled on every build instead of being taken from the cache.
_VOLATILE = re.compile(r"(^-e\b|^--editable\b|file:|git\+|hg\+|svn\+|^\.{1,2}/|^/)")


def install(w: Workload, sdk: Sdk, log: Path) -> DependencyEnv:
    if not w.requirements:
        return DependencyEnv(None, ())
    if w.requirements_file:
        args = ["-r", str(w.requirements_file)]
    else:
        args = list(w.requirements)
    key = hashlib.sha256(json.dumps([sdk.manifest["key"], sorted(w.requirements),
                                     extensions.driver_fingerprint(), INSTALL_VERSION]).encode()).hexdigest()
    volatile = any(_VOLATILE.search(r) for r in w.requirements)
    final = cache_root() / "deps" / key[:24]
    with file_lock(final.with_name(final.name + ".lock")):
        if volatile or not (final / ".complete").is_file():
            with staging_dir(final) as stage:
                site = stage / "site"
                events = stage / "driver-events.jsonl"
                report = stage / "pip-report.json"
                # Source builds go through forge's compiler driver. pip caches the wheels it builds
                # in a cache of forge's own, per SDK and driver: a package version is built once.
                wheels = (cache_root() / "extensions" /
                          f"{sdk.manifest['key'][:16]}-{extensions.driver_fingerprint()}")
                env = {**os.environ, **extensions.toolchain_env(sdk, stage / "driver-bin", events),
                       "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_CACHE_DIR": str(wheels)}
                if not shutil.which("cargo"):
                    # No Rust here: maturin (and puccinialin, which would download a Rust) only
                    # from wheels, which the static SDK cannot use, so a Rust package fails at once.
                    env["PIP_ONLY_BINARY"] = ",".join(sorted(RUST_ONLY_BINARY))

                python = sdk.python

                def pip_install(no_binary: list[str]) -> subprocess.CompletedProcess:
                    run_env = {**env, "PIP_NO_BINARY": ",".join(no_binary)} if no_binary else env
                    with open(log, "ab") as fh:
                        return subprocess.run(
                            [str(python), "-m", "pip", "install", "--no-compile", "--target",
                             str(site), "--root-user-action=ignore", "--report", str(report), *args],
                            stdout=fh, stderr=subprocess.STDOUT, env=run_env, cwd=w.project_dir)

                proc = pip_install([])
                if proc.returncode != 0 and _needs_cffi_backend(log.read_text(errors="replace")):
                    # An out-of-line cffi module: its build runs `FFI()`, which imports
                    # _cffi_backend. The static SDK interpreter cannot load it, so pip runs again
                    # under the SDK interpreter relinked with cffi's backend built in.
                    cffi_python = _cffi_build_python(sdk, env, stage, log)
                    if cffi_python is not None:
                        python = cffi_python
                        shutil.rmtree(site, ignore_errors=True)
                        proc = pip_install([])
                if proc.returncode == 0:
                    # A pure wheel next to compiled ones (multidict, yarl, frozenlist...) is the
                    # package's fallback: CPython would install the compiled wheel, so forge builds
                    # those from their sdists instead.
                    compiled = _compiled_variants(report, sdk, env, stage, log)
                    if compiled:
                        shutil.rmtree(site, ignore_errors=True)
                        proc = pip_install(compiled)
                if proc.returncode != 0:
                    text = log.read_text(errors="replace")
                    known = _failure(text, _read_events(events), log)
                    if known is not None:
                        raise known
                    mismatch = pip_python.find_mismatch(text)
                    if mismatch:
                        raise errors.DependencyNeedsOtherPython(
                            pip_python.explain(mismatch, sdk.version, log))
                    names = sorted(failed_builds(text))
                    if names:
                        raise errors.NativeExtensionDependency(
                            f"{', '.join(names)} could not be built from source with forge's musl "
                            f"toolchain (its extension modules failed to compile; the compiler's "
                            f"output is in pip's log: {log}). Use a pure-Python alternative, or a "
                            f"version of it that builds with gcc/clang against musl.")
                    tail = "\n".join(text.splitlines()[-12:])
                    raise errors.DependencyInstallFailed(
                        f"pip could not install {' '.join(w.requirements)} into the build environment:\n"
                        f"{tail}\nFull log: {log}. Fix the requirement (name, version, index) and build again.")
                built = extensions.collect(site, stage / "extensions", lambda p: _owner(site, p))
                natives = sorted(p for p in site.rglob("*") if p.name.endswith(NATIVE_SUFFIXES)
                                 or ".so." in p.name)
                if natives:
                    owners = sorted({f"{_owner(site, p)} ({p.relative_to(site)})" for p in natives})
                    raise errors.NativeExtensionDependency(
                        f"dependencies ship prebuilt shared objects that cannot be linked statically: "
                        f"{'; '.join(owners)}. A static binary has no dynamic loader, so these could "
                        f"never load, and they were not built by forge's compiler driver (a wheel "
                        f"with binaries, or a build that ignores CC). Use a version that builds from "
                        f"its sdist, or a pure-Python alternative, and build again.")
                # Paths as they will be once the staging directory is renamed into place.
                extensions.save([ExtensionModule(m.name, m.symbol,
                                                 str(final / Path(m.object).relative_to(stage)),
                                                 m.distribution, m.libraries, m.cxx) for m in built],
                                stage / "extensions.json")
                (stage / "sources.json").write_text(json.dumps(_source_built(report), sort_keys=True))
                for scratch in (events, stage / "driver-bin", *_cffi_scratch(stage)):
                    shutil.rmtree(scratch) if scratch.is_dir() else scratch.unlink(missing_ok=True)
                (stage / ".complete").write_text("ok")
    site = final / "site"
    sdists = json.loads((final / "sources.json").read_text()) if (final / "sources.json").is_file() else {}
    return DependencyEnv(site, read_distributions(site, sdists), extensions.load(final / "extensions.json"))
