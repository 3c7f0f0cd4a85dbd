"""The native target: Nuitka, run by the SDK interpreter, emits one fully static x86_64 ELF."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from forge import __version__, errors, output, verify
from forge.elfcheck import static_problems
from forge.extensions import build_interpreter
from forge.extensions import link_flags as extension_link_flags
from forge.proc import run_killable
from forge.targets.base import Artifact, BuildInputs
from forge.extensions.inittab import build_inittab_object, used_modules


# --gc-sections drops code no workload reaches (the SDK is compiled with per-function sections).
LDFLAGS = "-static -Wl,--gc-sections"


class NativeTarget:
    name = "native"
    whole_project = True     # dependencies and the project taken whole (forge/inclusion.py)
    makes_image = True       # write_output() writes the image, SBOM and binary (with its package data)
    product = "a static binary in an image"

    def companion_files(self, artifact: Artifact) -> list[str]:
        """Package data beside the binary, where __file__ points."""
        return sorted(p.name for p in artifact.path.parent.iterdir() if p != artifact.path)

    def sdk_python(self, requested: str) -> str:
        return requested

    def fingerprint(self) -> str:
        """Everything about how this target compiles that isn't in the inputs (for the build cache)."""
        return (f"native nuitka-flags=standalone,static-libpython,no_site,no_warnings,runtime-bytecode,"
                f"deps-whole-bytecode "
                f"ldflags={LDFLAGS} "
                f"inittab=pruned-v2 allocator-default=mimalloc")

    def nuitka_command(self, inputs: BuildInputs, out_dir: Path) -> list[str]:
        cmd = [str(inputs.sdk.python), "-m", "nuitka", "--standalone", "--static-libpython=yes",
               f"--output-dir={out_dir}", "--output-filename=app", "--remove-output",
               "--assume-yes-for-downloads", "--no-progressbar",
               # No site import (nothing to find at run time) and no warnings filters at start-up.
               "--python-flag=no_site", "--python-flag=no_warnings",
               # forge_runtime rides along as bytecode: its hot path is attribute access on
               # __slots__ objects, which CPython's specialising interpreter does faster than
               # Nuitka's generic C calls (hello: +8% req/s, same cold start; docs/build.md).
               "--noinclude-custom-mode=forge_runtime:bytecode",
               f"--jobs={os.cpu_count() or 2}"]
        cmd += [f"--include-module={m}" for m in inputs.include]
        # Dependencies whole, as bytecode unless [tool.forge] compile names them; the project whole
        # (forge/inclusion.py). --show-progress: the module count for forge's progress line.
        cmd += [*inputs.nuitka_flags, "--show-progress"]
        cmd.append(str(inputs.entry_script))
        return cmd

    def _env(self, inputs: BuildInputs, ldflags: str) -> dict:
        sdk = inputs.sdk
        return {**os.environ,
                "CC": str(sdk.cc),
                "LDFLAGS": f"{ldflags} -L{sdk.deps_lib}",
                "PYTHONPATH": os.pathsep.join(map(str, inputs.search_path)),
                "NUITKA_CACHE_DIR": str(sdk.path.parent.parent / "nuitka-cache"),
                "PYTHONHASHSEED": "0", "SOURCE_DATE_EPOCH": os.environ.get("SOURCE_DATE_EPOCH", "0")}

    def _nuitka(self, cmd: list[str], inputs: BuildInputs, env: dict, cwd: Path) -> None:
        from forge import console
        with open(inputs.log, "ab") as fh, console.follow_nuitka(inputs.log):
            proc = run_killable(cmd, stdout=fh, env=env, cwd=cwd)
        if proc.returncode != 0:
            tail = "\n".join(inputs.log.read_text(errors="replace").splitlines()[-20:])
            raise errors.CompileFailed(
                f"Nuitka could not compile {inputs.workload.module_path}:\n{tail}\nFull log: "
                f"{inputs.log}. If it names a module that is imported dynamically, add it to "
                f"[tool.forge] include = [...].")

    def _with_extensions(self, cmd: list[str], env: dict, inputs: BuildInputs,
                         out_dir: Path) -> tuple[list[str], dict]:
        """With dependencies' extension modules, Nuitka runs under the SDK interpreter relinked
        with them built in: it imports packages while compiling them (anti-bloat rules run
        `import psutil`), which the SDK's own interpreter cannot do for these modules."""
        if not inputs.extensions:
            return cmd, env
        exe = out_dir / "forge-python" / "bin" / "python3"
        if not exe.is_file():
            build_interpreter(inputs.sdk, inputs.extensions, out_dir / "forge-python")
        return [str(exe), *cmd[1:]], env

    def _module_table(self, inputs: BuildInputs, out_dir: Path) -> tuple[Path | None, dict]:
        """A pass that only analyses (Nuitka --generate-c-only with a report), then the pruned
        module table for the link. [tool.forge] builtins = "all" keeps every built-in module."""
        sdk = inputs.sdk
        extra = {m.name: m.symbol for m in inputs.extensions}
        libpl = next(sdk.path.glob("python/lib/python3.*/config-3.*"))
        include_dir = next(sdk.path.glob("python/include/python3.*"))
        if inputs.workload.settings.get("builtins") == "all":
            if not extra:
                return None, {"builtins": "all"}
            # Every SDK module, plus the dependencies' extension modules.
            obj, _ = build_inittab_object(sdk.python, sdk.cc, libpl, include_dir,
                                          set(sdk.manifest["builtin_modules"]), out_dir, extra)
            return obj, {"builtins": "all"}
        pre = out_dir / "analysis"
        pre.mkdir()
        report = pre / "report.xml"
        cmd = self.nuitka_command(inputs, pre)
        cmd[-1:-1] = ["--generate-c-only", f"--report={report}"]
        cmd, env = self._with_extensions(cmd, self._env(inputs, LDFLAGS), inputs, out_dir)
        self._nuitka(cmd, inputs, env, out_dir)
        builtins = set(sdk.manifest["builtin_modules"])
        keep = (used_modules(report, inputs.include) | set(inputs.keep_builtins)) & builtins
        obj, removed = build_inittab_object(sdk.python, sdk.cc, libpl, include_dir, keep, out_dir, extra)
        shutil.rmtree(pre)
        kept = sorted(builtins - set(removed))
        return obj, {"builtins_linked": kept, "builtins_dropped": removed}

    def _allocator(self, inputs: BuildInputs) -> tuple[list[str], dict]:
        """mimalloc (default) or musl's own malloc ([tool.forge] allocator = "musl"). musl's malloc
        returns memory to the kernel eagerly: ~200 mmap/munmap pairs before hello listens, and
        slower large allocations under load. The object defines malloc & co., so the linker takes
        them instead of libc.a's."""
        name = inputs.workload.settings.get("allocator", "mimalloc")
        if name == "musl":
            return [], {"allocator": "musl"}
        obj = inputs.sdk.mimalloc_object
        if not obj.is_file():
            raise errors.SdkIncomplete(
                f"the SDK at {inputs.sdk.path} has no {obj.name}, which forge links as the workload's "
                f"allocator. Rebuild the SDK (`forge toolchain clean && forge toolchain build`), or "
                f"set [tool.forge] allocator = \"musl\" to link musl's malloc instead.")
        return [str(obj)], {"allocator": "mimalloc"}

    def compile(self, inputs: BuildInputs, out_dir: Path) -> Artifact:
        sdk = inputs.sdk
        table, table_details = self._module_table(inputs, out_dir)
        allocator, allocator_details = self._allocator(inputs)
        # Objects on the link line before libpython.a and libc.a: the module table's
        # _PyImport_Inittab wins over config.o, the allocator's malloc over musl's. The
        # dependencies' extension modules (forge/extensions) follow, with the libraries they use.
        ext_flags = extension_link_flags(inputs.extensions)
        ldflags = " ".join([LDFLAGS, *([str(table)] if table else []), *allocator, *ext_flags])
        cmd, env = self._with_extensions(self.nuitka_command(inputs, out_dir), self._env(inputs, ldflags),
                                         inputs, out_dir)
        self._nuitka(cmd, inputs, env, out_dir)
        dist = out_dir / f"{inputs.entry_script.stem}.dist"
        binary = dist / "app"
        if not binary.is_file():
            raise errors.CompileFailed(f"Nuitka reported success but {binary} is missing; see {inputs.log}.")
        problems = static_problems(binary)
        if problems:
            raise errors.NotStatic(
                f"the compiled binary {binary} is not fully static ({'; '.join(problems)}), so it "
                f"cannot run in a FROM scratch image. This means something linked a shared "
                f"library; check LDFLAGS and the SDK ({sdk.path}), or rebuild the SDK with "
                f"`forge toolchain clean && forge toolchain build`.")
        subprocess.run(["strip", "--strip-all", str(binary)], check=True)
        return Artifact(binary, self.name, binary.stat().st_size,
                        {"files": sorted(p.name for p in dist.iterdir()), **table_details,
                         **allocator_details,
                         "extension_modules": [{"name": m.name, "distribution": m.distribution,
                                                "libraries": list(m.libraries), "cxx": m.cxx}
                                               for m in inputs.extensions]})

    def write_output(self, artifact: Artifact, w, out: Path, sdk, dep_env, cached: bool, *,
                     opts, log_dir: Path, step) -> dict:
        """out/: the image (OCI layout or docker archive), the binary with its package data, the SBOM
        and forge-build.json; the start check runs first and nothing is written if it fails.
        `opts` is forge.build.BuildOptions; `step(title)` a progress step (console.steps)."""
        from forge.cache import staging_dir
        from forge.fsio import link_or_copy
        from forge.image.build import ImageSpec, build_image
        from forge.publish import DockerArchivePublisher, OciLayoutPublisher
        from forge.sbom import build_sbom

        tag = opts.tag or f"{w.name}:latest"
        with step("image"):
            spec = ImageSpec(
                app_dir=artifact.path.parent, entrypoint=(f"/app/{artifact.path.name}",),
                env={}, labels={
                    "org.opencontainers.image.title": w.name,
                    "org.opencontainers.image.version": str(w.settings.get("version", "")) or "0",
                    "org.opencontainers.image.created":
                        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(opts.epoch)),
                    "org.opencontainers.image.description": f"{w.module} built by forge {__version__}",
                    "org.opencontainers.image.licenses": str(w.settings.get("license", "NOASSERTION")),
                },
                compression=opts.compression, epoch=opts.epoch,
                include_zoneinfo=_uses_zoneinfo(w))
            image = build_image(spec)
        with step("start check" if opts.verify else "start check (skipped: --no-verify)"):
            check = _start_check(opts.verify, w, artifact, image, sdk, log_dir)
        with step("write output"):
            with staging_dir(out) as stage:
                if opts.format == "oci":
                    OciLayoutPublisher(stage / "image", ref_name=tag).publish(image)
                    image_path = out / "image"
                else:
                    DockerArchivePublisher(stage / "image.tar", tag).publish(image)
                    image_path = out / "image.tar"
                shutil.copy2(artifact.path, stage / artifact.path.name)
                for extra in artifact.path.parent.iterdir():   # package data: beside the binary
                    if extra != artifact.path and extra.name not in _OUTPUT_NAMES:
                        link_or_copy(extra, stage / extra.name)
                (stage / "sbom.spdx.json").write_bytes(
                    build_sbom(w.name, image.digest, sdk.manifest, dep_env.distributions, opts.epoch))
                summary = {
                    "name": w.name, "tag": tag, "digest": image.digest, "target": artifact.target,
                    "format": opts.format, "compression": opts.compression,
                    "image": str(image_path), "binary": str(out / artifact.path.name),
                    "binary_size": artifact.size,
                    "image_size_compressed": image.compressed_size,
                    "image_size_uncompressed": image.uncompressed_size,
                    "layers": [{"digest": layer.digest, "size": layer.size,
                                "media_type": layer.media_type,
                                "uncompressed_size": layer.uncompressed_size} for layer in image.layers],
                    "sbom": str(out / "sbom.spdx.json"), "cached_compile": cached,
                    **check.summary(),
                    "python": sdk.version, "dependencies": [f"{d.name}=={d.version}" for d in dep_env.distributions],
                    "extension_modules": sorted(m.name for m in dep_env.extensions),
                }
                output.write(stage, summary)
        with step("load into Docker" if opts.load else "finish"):
            if opts.load:
                from forge.publish import DaemonPublisher
                DaemonPublisher(tag).publish(image)
        summary["loaded"] = opts.load
        return summary


_OUTPUT_NAMES = {"image", "image.tar", "sbom.spdx.json", output.MARKER}


def _start_check(enabled: bool, w, artifact: Artifact, image, sdk, log_dir: Path) -> verify.Verification:
    """Run what was built once (forge/verify.py); StartupCheckFailed stops the build here."""
    if not enabled:
        return verify.Verification(False, "skipped", None)
    excluded = tuple(w.settings.get("exclude", ()) or ())
    return verify.verify(app_dir=artifact.path.parent, binary_name=artifact.path.name,
                         served=w.attr is not None, name=w.name, image=image,
                         record_dir=artifact.path.parent.parent,
                         builtin_modules=set(sdk.manifest.get("builtin_modules", ())),
                         excluded=excluded, log=log_dir / "start-check.log")


def _uses_zoneinfo(w) -> bool:
    return any("zoneinfo" in f.read_text(errors="replace") for f in w.source_files() if f.suffix == ".py")
