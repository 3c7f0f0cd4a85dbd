"""Builds the SDK into the cache: fetch and verify sources, run the recipe's stages, post-process.

The entry is built in a staging directory and renamed into place only once it has passed its own
checks, so a failed or interrupted build never leaves an entry that looks complete. A lock makes
concurrent builds of the same key wait for each other instead of racing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

from forge import console, errors
from forge.cache import cache_root, file_lock, remove_stale_staging, staging_dir
from forge.proc import run_killable
from forge.sdk import compiler as compilers
from forge.sdk import sources as srcs
from forge.elfcheck import static_problems
from forge.sdk.key import SDK_LAYOUT_VERSION, _is_wasm_host, _package_file, _patches, cache_key  # noqa: F401
from forge.sdk.layout import MANIFEST, REQUIRED_BUILTINS, Sdk, sdk_dir

RECIPE_STAGES = ("zlib", "bzip2", "xz", "libffi", "sqlite", "libuuid", "openssl", "mimalloc", "cpython")


def _run(cmd: list[str], log: Path, stage: str, env: dict | None = None, cwd: Path | None = None) -> None:
    with open(log, "ab") as fh:
        fh.write(f"$ {' '.join(map(str, cmd))}\n".encode())
        fh.flush()
        proc = run_killable(cmd, stdout=fh, env=env, cwd=cwd)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        raise errors.SdkBuildFailed(
            f"stage {stage!r} failed (exit {proc.returncode}). Its full log is {log}; last lines:\n"
            + "\n".join(tail) + "\nFix the cause shown there and run `forge toolchain build` again; "
            "nothing was added to the cache.")


def _fetch_python_packages(cache: Path, logs: Path) -> Path:
    """pip, Nuitka and Nuitka's build requirements, pinned by hash, in a folder pip can install
    from offline (`--no-index --find-links`)."""
    store = cache / "sources" / "python"
    store.mkdir(parents=True, exist_ok=True)
    req = store / "requirements.txt"
    req.write_bytes(_package_file("requirements.txt"))
    _run([sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes", "-r", str(req),
          "-d", str(store)], logs / "python-packages.log", "python-packages")
    return store


def _relocatable_sysconfig(prefix: Path, deps: Path) -> None:
    """Make sysconfig follow the SDK when it moves (every build-time path under the SDK root,
    including the compiler wrapper and deps, is rewritten relative to sys.prefix at import), and give Nuitka link flags it understands.

    Nuitka, linking a static libpython, keeps only `-l:`-style entries of MODLIBS, so every library
    becomes -l:libX.a (found through -L<sdk>/deps/lib at build time).
    """
    (data,) = prefix.glob("lib/python3.*/_sysconfigdata_*.py")
    text = data.read_text()
    # Link order matters for static archives: users before what they use (ssl before crypto).
    order = ["ssl", "crypto", "sqlite3", "z", "bz2", "lzma", "uuid", "ffi", "mpdec", "expat"]
    libs = [f"-l:lib{n}.a" for n in order if (deps / "lib" / f"lib{n}.a").is_file()]
    # The HACL* hash libraries (3.12+) that the hash modules use; HMAC (3.14) uses the others, so
    # it sorts first.
    libs += [f"-l:{p.name}" for p in sorted((deps / "lib").glob("libHacl_*.a"))] + ["-lm"]
    # The staging path is random; a placeholder keeps it out of every binary that embeds sysconfig
    # (so builds on different machines stay bit-identical) and is resolved at import time.
    text = text.replace(str(prefix.parent), "@FORGE_SDK_ROOT@")
    text += (
        "\n# forge: relocatable SDK, and static link flags Nuitka understands.\n"
        "import os as _os, sys as _sys\n"
        "_ROOT = _os.path.dirname(_sys.prefix)\n"
        "build_time_vars = {k: (v.replace('@FORGE_SDK_ROOT@', _ROOT) if isinstance(v, str) else v)\n"
        "                   for k, v in build_time_vars.items()}\n"
        f"build_time_vars['MODLIBS'] = {' '.join(libs)!r}\n"
    )
    data.write_text(text)
    for cached in data.parent.glob("__pycache__/_sysconfigdata_*"):
        cached.unlink()


def _apply_patches(prefix: Path, log: Path) -> None:
    site = next(prefix.glob("lib/python3.*/site-packages"))
    for name, _ in _patches():
        if not name.startswith("site-"):
            continue  # cpython-*.patch are applied to the source tree by the recipe
        patch = resources.files("forge.sdk").joinpath("patches", name)
        with resources.as_file(patch) as p:
            _run(["patch", "-p1", "-d", str(site), "-i", str(p)], log, f"patch {name}")


def _installed(prefix: Path) -> list[str]:
    return sorted(p.name[: -len(".dist-info")] for p in prefix.glob("lib/python3.*/site-packages/*.dist-info"))


def _probe(python: Path) -> dict:
    code = ("import json, sys, sysconfig, ssl; print(json.dumps({'version': sys.version.split()[0], "
            "'builtin_modules': sorted(sys.builtin_module_names), 'openssl': ssl.OPENSSL_VERSION}))")
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    if out.returncode != 0:
        raise errors.SdkBuildFailed(f"the freshly built interpreter does not start:\n{out.stderr}")
    return json.loads(out.stdout)


def build_sdk(version: str = srcs.DEFAULT_PYTHON, compiler_override: str | None = None,
              jobs: int | None = None) -> Sdk:
    source_list = srcs.sources_for(version)        # unknown version fails here, before any work
    compiler = compilers.find_compiler(compiler_override)
    key = cache_key(version, compiler)
    cache = cache_root()
    final = sdk_dir(cache, version, key)
    if (final / MANIFEST).is_file():
        console.info(f"SDK already built: {final}")
        return Sdk.load(final)
    logs = cache / "logs" / final.name
    logs.mkdir(parents=True, exist_ok=True)
    console.info(f"building the SDK (Python {srcs.cpython_source(version).version}); stage logs: {logs}")
    started = time.monotonic()
    with file_lock(final.with_name(final.name + ".lock")):
        if (final / MANIFEST).is_file():  # another process finished it while we waited
            return Sdk.load(final)
        remove_stale_staging(final)
        total = 2 + len(RECIPE_STAGES) + 3
        with console.steps("SDK", total) as bar, staging_dir(final) as stage_root:
            with bar.step("fetch sources"), open(logs / "fetch.log", "ab") as fetch_log:
                tarballs = {s.env_var: srcs.fetch(s, cache, fetch_log) for s in source_list}
            with bar.step("fetch pip and Nuitka"):
                wheels = _fetch_python_packages(cache, logs)
            wrapper = compilers.install_wrapper(compiler, stage_root)
            prefix, deps = stage_root / "python", stage_root / "deps"
            for d in (deps / "lib", deps / "include"):
                d.mkdir(parents=True)
            work = Path(tempfile.mkdtemp(prefix="forge-sdk-work-"))
            env = {**os.environ, "WORK": str(work), "PREFIX": str(prefix), "DEPS": str(deps),
                   "CC": str(wrapper), "JOBS": str(jobs or os.cpu_count() or 2),
                   "SRC": str(cache / "sources"), **{k: v.name for k, v in tarballs.items()}}
            with resources.as_file(resources.files("forge.sdk")) as pkg_dir:
                recipe = pkg_dir / "recipe.sh"
                env["PATCHES"] = str(pkg_dir / "patches")
                try:
                    host = pkg_dir / "wasm-host"
                    env["HOST_PATCHES"] = str(host)
                    for stage in RECIPE_STAGES:
                        cmd = ["bash", str(recipe), stage]
                        if stage == "cpython" and _is_wasm_host(version):
                            cmd = ["bash", str(host / f"cpython-{srcs.WASM_HOST_PYTHON}.sh")]
                        with bar.step(stage):
                            _run(cmd, logs / f"{stage}.log", stage, env=env)
                finally:
                    shutil.rmtree(work, ignore_errors=True)
            python = prefix / "bin" / "python3"
            with bar.step("post-process"):
                _relocatable_sysconfig(prefix, deps)
                shutil.rmtree(next(prefix.glob("lib/python3.*")) / "test", ignore_errors=True)
                for so in prefix.glob("lib/python3.*/lib-dynload/*.so"):
                    so.unlink()  # a static interpreter cannot load these anyway
            with bar.step("install pip and Nuitka"):
                log = logs / "install.log"
                pins = dict(re.findall(r"^([\w-]+)==(\S+)", _package_file("requirements.txt").decode(), re.M))
                pip_whl = wheels / f"pip-{pins['pip']}-py3-none-any.whl"
                _run([str(python), f"{pip_whl}/pip", "install", "--no-index", "--find-links", str(wheels),
                      "--no-compile", "--disable-pip-version-check", "--root-user-action=ignore",
                      f"pip=={pins['pip']}", f"nuitka=={pins['nuitka']}"], log, "install")
                _apply_patches(prefix, log)
            with bar.step("verify"):
                probe = _probe(python)
                missing = sorted(set(REQUIRED_BUILTINS) - set(probe["builtin_modules"]))
                problems = static_problems(python.resolve())
                if missing or problems:
                    raise errors.SdkBuildFailed(
                        f"the SDK built but fails its checks: missing built-in modules {missing}, "
                        f"static-binary problems {problems}. See the logs in {logs}.")
                manifest = {
                    "key": key, "python_version": probe["version"], "openssl": probe["openssl"],
                    "builtin_modules": probe["builtin_modules"],
                    "sources": [{"name": s.name, "version": s.version, "sha256": s.sha256,
                                 "license": s.license, "file": s.filename} for s in source_list],
                    "packages": _installed(prefix),
                    "compiler": str(compiler.musl_gcc), "build_seconds": round(time.monotonic() - started, 1),
                }
                (stage_root / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    console.info(f"SDK ready in {time.monotonic() - started:.0f}s: {final}")
    return Sdk.load(final)
