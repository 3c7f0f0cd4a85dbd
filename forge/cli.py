"""The `forge` command line. Commands parse options and call the pipeline; errors become one
paragraph on stderr and the error class's exit code."""

from __future__ import annotations

import json
import os
import shutil
import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from forge import __version__, console, errors
from forge.sdk import sources as srcs

# Help is click's plain formatter (rich_markup_mode=None) on purpose: it shows flags as flags and
# choices as a|b on every typer release; typer 0.2x's rich panels label every flag `<bool>`.
HELP = dict(no_args_is_help=True, rich_markup_mode=None)
app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, **HELP,
                  help="Compile Python edge workloads into tiny, fully static native artifacts.")
toolchain = typer.Typer(**HELP, help="Build and inspect the static musl CPython SDK.")
app.add_typer(toolchain, name="toolchain")


# Choices are Enums, so help lists them and a bad value is click's usage error (exit 2).
class ImageFormat(str, Enum):
    oci = "oci"
    docker_archive = "docker-archive"


class Compression(str, Enum):
    gzip = "gzip"
    zstd = "zstd"


class Target(str, Enum):
    native = "native"
    wasm = "wasm"


def _value(choice: Optional[Enum]) -> Optional[str]:
    return None if choice is None else choice.value


def _version(value: bool) -> None:
    if value:
        console.out.print(f"forge {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print forge's version and exit.")) -> None:
    pass


PYTHON_OPT = typer.Option(srcs.DEFAULT_PYTHON, "--python", envvar="FORGE_PYTHON",
                          help=f"CPython version of the SDK: {srcs.supported_versions()}.")


@toolchain.command("build")
def toolchain_build(python: str = PYTHON_OPT,
                    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", help="Parallel make jobs.")) -> None:
    """Build the SDK (once per machine; cached by a hash of every input)."""
    from forge.sdk.builder import build_sdk

    sdk = build_sdk(python, jobs=jobs)
    console.out.print(str(sdk.path))


@toolchain.command("info")
def toolchain_info(python: str = PYTHON_OPT,
                   as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Show the built SDK: versions, paths, built-in modules, size and cache key."""
    from forge.sdk.layout import find_sdk

    info = find_sdk(python).info()
    if as_json:
        console.out.print_json(json.dumps(info))
        return
    console.out.print(f"[bold]Python[/]      {info['python_version']} (static, musl)")
    console.out.print(f"[bold]SDK[/]         {info['path']}")
    console.out.print(f"[bold]interpreter[/] {info['interpreter']}")
    console.out.print(f"[bold]size[/]        {info['size_bytes'] / 2**20:.1f} MiB")
    console.out.print(f"[bold]cache key[/]   {info['cache_key']}")
    console.out.print(f"[bold]OpenSSL[/]     {info['openssl']}")
    console.out.print("[bold]sources[/]     " + ", ".join(f"{k} {v}" for k, v in info["sources"].items()))
    console.out.print("[bold]packages[/]    " + ", ".join(info["packages"]))
    console.out.print(f"[bold]built-in modules[/] ({len(info['builtin_modules'])})")
    console.out.print("  " + " ".join(info["builtin_modules"]))


@toolchain.command("path")
def toolchain_path(python: str = PYTHON_OPT) -> None:
    """Print the SDK's directory (for scripts)."""
    from forge.sdk.layout import find_sdk

    print(find_sdk(python).path)


@toolchain.command("clean")
def toolchain_clean(sources: bool = typer.Option(False, "--sources", help="Also drop downloaded source tarballs."),
                    logs: bool = typer.Option(False, "--logs", help="Also drop build logs.")) -> None:
    """Remove every built SDK from the cache."""
    from forge.cache import cache_root
    from forge.sdk.layout import sdk_root

    cache = cache_root()
    targets = [sdk_root(cache)] + ([cache / "sources"] if sources else []) + ([cache / "logs"] if logs else [])
    for t in targets:
        if t.exists():
            shutil.rmtree(t)
            console.info(f"removed {t}")


@app.command("build")
def build_cmd(
    src: Path = typer.Argument(..., metavar="SRC", help="A .py file, or a project directory with [tool.forge] entry."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Output directory (default dist/NAME)."),
    tag: Optional[str] = typer.Option(None, "--tag", "-t", help="Image name:tag (default NAME:latest)."),
    fmt: Optional[ImageFormat] = typer.Option(None, "--format", help="oci (layout directory) or docker-archive."),
    compression: Optional[Compression] = typer.Option(None, "--compression", help="Layer compression."),
    load: bool = typer.Option(False, "--load", help="Load the image into the local Docker engine."),
    python: Optional[str] = typer.Option(None, "--python", envvar="FORGE_PYTHON", help="SDK Python version."),
    build_sdk: bool = typer.Option(False, "--build-sdk", help="Build the SDK first if it is missing."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Recompile even if the build cache has it."),
    target: Optional[Target] = typer.Option(None, "--target",
                                         help="native (static x86_64 binary + image) or wasm (wasm32-wasi module)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
    no_verify: bool = typer.Option(False, "--no-verify",
                                   help="Do not start the built binary once before calling the build good."),
) -> None:
    """Compile a workload into a fully static binary and a reproducible FROM scratch image."""
    from forge.build import build, options_from

    opts = options_from(src, output=output, tag=tag, format=_value(fmt), compression=_value(compression),
                        load=load, python=python, build_sdk=build_sdk, use_cache=not no_cache, target=_value(target),
                        verify=not no_verify, live=not as_json)
    summary = build(opts)
    if as_json:
        print(json.dumps(summary, indent=2, sort_keys=True))
        return
    from forge.output import BuildOutput, WasmOutput

    result = BuildOutput.from_summary(summary)
    if isinstance(result, WasmOutput):
        from forge.targets.wasm import print_summary

        print_summary(result)
        return
    mib = 2**20
    console.out.print(f"[bold green]built[/] {result.tag}  {result.digest}")
    console.out.print(f"  binary  {result.binary}  ({result.binary_size / mib:.1f} MiB, static)")
    console.out.print(f"  image   {result.image_path()}  ({result.image_size_compressed / mib:.1f} MiB "
                      f"compressed, {result.image_size_uncompressed / mib:.1f} MiB uncompressed)")
    console.out.print(f"  sbom    {result.sbom}")
    if result.verified:
        console.out.print(f"  started start check passed in {result.start_seconds * 1000:.0f} ms "
                          f"({result.verify_method}{', recorded' if result.verify_cached else ''})")
    elif result.verify_method == "skipped":
        console.out.print("  started not checked (--no-verify)")
    console.out.print(f"  time    {result.build_seconds:.1f}s"
                      + (" (compile cached)" if result.cached_compile else ""))


def _check_variants(value: Optional[str]) -> Optional[str]:
    from forge.bench.run import parse_variants

    try:
        parse_variants(value)
    except errors.ConfigError as exc:
        raise typer.BadParameter(exc.message) from None
    return value


@app.command("bench")
def bench_cmd(
    src: Path = typer.Argument(Path("examples/hello"), metavar="SRC", help="A workload, or a forge build output directory."),
    runs: int = typer.Option(10, "--runs", "-n", help="Measured runs per variant (after one warm-up run)."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Results directory (default PROJECT/.forge/bench)."),
    as_json: bool = typer.Option(False, "--json", help="Print results.json on stdout."),
    variants: Optional[str] = typer.Option(None, "--variants", callback=_check_variants,
                                           help="Comma-separated: forge,cpython,nuitka,pyinstaller,floor,wasm (default all)."),
    budget: bool = typer.Option(False, "--budget", help="Only the forge binary's cold-start budget."),
    rebuild: bool = typer.Option(False, "--rebuild", help="Rebuild forge (no compile cache) and the baselines."),
    wrk_seconds: float = typer.Option(3.0, "--wrk-seconds", help="Length of each wrk run."),
    cold_build: bool = typer.Option(True, "--cold-build/--no-cold-build",
                                    help="Time an uncached forge build when its compile was cached and none is on record."),
    workload: Optional[Path] = typer.Option(None, "--workload", help="The baselines' workload when SRC is a build output."),
    python: Optional[str] = typer.Option(None, "--python", envvar="FORGE_PYTHON", help="SDK Python version."),
    also_python: Optional[str] = typer.Option(None, "--also-python", metavar="3.14,...",
                                              help="More SDK versions: the same workload built on each, measured side by side."),
) -> None:
    """Measure the forge image against CPython, Nuitka, PyInstaller and the static C floor (docs/bench.md)."""
    from forge.bench.run import BenchOptions, parse_variants, run_bench, run_budget_only

    opts = BenchOptions(src=src, runs=runs, out_dir=output, variants=parse_variants(variants), rebuild=rebuild,
                        wrk_seconds=wrk_seconds, cold_build=cold_build, workload=workload, python=python,
                        also_pythons=tuple(srcs.check_selectable(p.strip()) for p in (also_python or "").split(",")
                                           if p.strip()),
                        command=" ".join(["forge", *sys.argv[1:]]))
    doc = run_budget_only(opts) if budget else run_bench(opts)
    if as_json:
        print(json.dumps(doc, indent=2))
        return
    from forge.bench.report import budget_markdown, markdown

    console.out.print(budget_markdown(doc) if budget else markdown(doc), markup=False)


deploy_app = typer.Typer(**HELP, help="Generate a deployment project for an edge platform.")
app.add_typer(deploy_app, name="deploy")
ci_app = typer.Typer(**HELP, help="Generate a CI workflow that builds, pushes and deploys.")
app.add_typer(ci_app, name="ci")


@app.command("push")
def push_cmd(
    out: Path = typer.Argument(..., metavar="OUT", help="A forge build output: its directory, an OCI image layout or a docker archive."),
    ref: str = typer.Argument(..., metavar="REF", help="Where to push: [registry[:port]/]repository[:tag] (tag default: latest)."),
    insecure: bool = typer.Option(False, "--insecure",
                                  help="Plain HTTP; only for a registry on this machine (localhost, 127.0.0.0/8, ::1)."),
) -> None:
    """Push an image to an OCI registry, sending only the blobs it lacks. Prints REF@sha256:..."""
    from forge.image.read import load_image
    from forge.publish.registry import RegistryPublisher, image_path_of

    publisher = RegistryPublisher(ref, insecure=insecure)   # checks the reference before reading anything
    image = load_image(image_path_of(out))
    publisher.publish(image)
    s = publisher.stats
    console.info(f"pushed in {s.seconds:.1f}s: {s.uploaded} blob(s) uploaded ({s.uploaded_bytes / 2**20:.2f} MiB), "
                 f"{s.existing} already there, {s.mounted} mounted; {s.requests} requests")
    print(publisher.pushed_reference(image))


@deploy_app.command("cloudflare")
def deploy_cloudflare_cmd(
    image: Optional[str] = typer.Option(None, "--image", help="Registry reference (with a tag) pushed with forge push."),
    dockerfile: bool = typer.Option(False, "--dockerfile",
                                    help="Let wrangler build the image from Dockerfile.scratch + a build context."),
    from_output: Optional[Path] = typer.Option(None, "--from",
                                               help="Read the image from this forge build output (not the registry)."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Where to write (default PROJECT/deploy/cloudflare)."),
    force: bool = typer.Option(False, "--force", help="Overwrite files you changed since forge wrote them."),
    project: Path = typer.Option(Path("."), "--project", help="The forge project ([tool.forge.cloudflare] settings)."),
    insecure: bool = typer.Option(False, "--insecure", help="Read --image over plain HTTP (loopback registries only)."),
) -> None:
    """Write a Cloudflare Containers project (wrangler.jsonc, Worker, package.json) for the image."""
    from forge.deploy.cloudflare import generate

    r = generate(project, image_ref=image, dockerfile=dockerfile, from_output=from_output, out_dir=output,
                 force=force, insecure=insecure)
    for w in r.warnings:
        console.warn(w)
    mb = 1000 * 1000
    console.out.print(f"[bold green]wrote[/] {r.out_dir}  ({len(r.report.written)} written, "
                      f"{len(r.report.unchanged)} unchanged)")
    console.out.print(f"  image     {r.image}  ({r.facts.platform}, {r.facts.size / 2**20:.1f} MiB uncompressed)")
    console.out.print(f"  instance  {r.settings.instance_label}; needs {-(-r.facts.required_disk() // mb)} MB of "
                      f"{r.settings.disk_bytes // mb} MB disk")
    if r.cold_start:
        console.out.print(f"  cold start {r.cold_start} (median, forge bench)")
    for rel in r.report.overwritten_user_changes:
        console.warn(f"overwrote your changes to {rel} (--force)")
    for rel in r.report.kept_stale:
        console.warn(f"kept {rel}: forge no longer generates it, and you changed it")
    console.out.print(f"  next      cd {r.out_dir} && npm install && npx wrangler deploy")


@deploy_app.command("workers")
def deploy_workers_cmd(
    target: Target = typer.Option(Target.wasm, "--target", help="What the Worker runs: wasm (the only one Workers run)."),
    from_output: Optional[Path] = typer.Option(None, "--from",
                                               help="A `forge build --target wasm` output (default: build the project)."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Where to write (default PROJECT/deploy/workers)."),
    force: bool = typer.Option(False, "--force", help="Overwrite files you changed since forge wrote them."),
    project: Path = typer.Option(Path("."), "--project", help="The forge project."),
) -> None:
    """Write a Cloudflare Workers project that runs the workload's wasm module (WASI shim, wrangler.toml)."""
    from forge.deploy.workers import FREE_LIMIT, PAID_LIMIT, generate

    def build_wasm(src: Path) -> dict:
        from forge.build import build, options_from
        return build(options_from(src, target="wasm"))

    r = generate(project, target=target.value, from_output=from_output, out_dir=output, force=force,
                 build_wasm=build_wasm)
    for w in r.warnings:
        console.warn(w)
    mb = 1000 * 1000
    console.out.print(f"[bold green]wrote[/] {r.out_dir}  ({len(r.report.written)} written, "
                      f"{len(r.report.unchanged)} unchanged)")
    console.out.print(f"  module    {r.build_output}{' (built now)' if r.built else ''}: {r.module_size / mb:.2f} MB, "
                      f"{r.gzip_size / mb:.2f} MB gzip (Workers: {FREE_LIMIT / mb:.0f} MB free, "
                      f"{PAID_LIMIT / mb:.0f} MB paid)")
    for rel in r.report.overwritten_user_changes:
        console.warn(f"overwrote your changes to {rel} (--force)")
    for rel in r.report.kept_stale:
        console.warn(f"kept {rel}: forge no longer generates it, and you changed it")
    console.out.print(f"  next      cd {r.out_dir} && npm install && npx wrangler deploy")


@ci_app.command("github")
def ci_github_cmd(
    output: Path = typer.Option(Path(".github/workflows/forge.yml"), "-o", "--output", help="The workflow file."),
    image: Optional[str] = typer.Option(None, "--image",
                                        help="Repository to push to (default: the FORGE_IMAGE repository variable)."),
    dockerfile: bool = typer.Option(False, "--dockerfile", help="Let wrangler build the image instead of pushing it."),
    project: str = typer.Option(".", "--project", help="The project directory, relative to the repository."),
    forge_spec: Optional[str] = typer.Option(None, "--forge-spec", help="pip requirement that installs forge in CI."),
    branch: str = typer.Option("main", "--branch", help="Deploy on pushes to this branch."),
    force: bool = typer.Option(False, "--force", help="Overwrite the workflow even if you changed it."),
) -> None:
    """Write a GitHub Actions workflow: build, push (registry secrets), deploy with wrangler."""
    from forge.ci import render_workflow, secrets_needed, write_workflow

    changed = write_workflow(output, render_workflow(project=project, image=image, dockerfile=dockerfile,
                                                     forge_spec=forge_spec, branch=branch), force=force)
    console.out.print(f"[bold green]{'wrote' if changed else 'unchanged'}[/] {output}")
    console.out.print(f"  secrets   {secrets_needed(dockerfile)}"
                      + ("" if image or dockerfile else "; variable FORGE_IMAGE (e.g. docker.io/you/app)"))


def _terminate(signum, frame):
    # SIGTERM unwinds like Ctrl-C, so staging directories are removed and child builds killed.
    raise KeyboardInterrupt


def _debug() -> bool:
    return os.environ.get("FORGE_DEBUG", "") not in ("", "0")


def _click_exception_classes() -> tuple[type, ...]:
    """ClickException of the click that typer runs on: typer 0.2x vendors it as `typer._click`,
    older releases import the `click` package. Neither is imported here unless typer did."""
    import typer.main

    found = []
    for mod in (getattr(typer.main, "_click", None), getattr(typer.main, "click", None),
                sys.modules.get("typer._click"), sys.modules.get("click")):
        cls = getattr(getattr(mod, "exceptions", None), "ClickException", None)
        if isinstance(cls, type) and cls not in found:
            found.append(cls)
    return tuple(found)


def _is_usage_error(exc: BaseException) -> bool:
    if isinstance(exc, _click_exception_classes()):
        return True
    # Any other click: its exceptions keep the ClickException protocol (show(), exit_code).
    return (any(c.__name__ == "ClickException" for c in type(exc).__mro__)
            and callable(getattr(exc, "show", None)) and isinstance(getattr(exc, "exit_code", None), int))


def _with_usage(exc: BaseException) -> None:
    """Some usage errors come from click's parser without a context (`Option '--tag' requires an
    argument.`), so they would print no usage line: give them the context of the command argv names."""
    if not hasattr(exc, "ctx") or exc.ctx is not None:
        return
    try:
        import typer.main

        cmd = typer.main.get_command(app)
        ctx = cmd.context_class(cmd, info_name="forge", resilient_parsing=True)
        for arg in sys.argv[1:]:
            sub = getattr(cmd, "commands", {}).get(arg)
            if sub is None:
                if arg.startswith("-"):
                    continue
                break
            cmd = sub
            ctx = cmd.context_class(cmd, info_name=arg, parent=ctx, resilient_parsing=True)
        exc.ctx, exc.cmd = ctx, cmd
    except Exception:
        pass   # the error still shows, without its usage line


def _crash_log(exc: BaseException) -> Path | None:
    """Write the traceback of an unexpected error to FORGE_CACHE/logs/crash/; its path, or None."""
    import platform
    import tempfile
    import time
    import traceback

    text = (f"forge {__version__}, Python {platform.python_version()}, typer {getattr(typer, '__version__', '?')}\n"
            f"command: {' '.join(['forge', *sys.argv[1:]])}\n\n"
            + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    name = f"crash-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.log"
    from forge.cache import cache_root

    for make_dir in (lambda: cache_root() / "logs" / "crash", lambda: Path(tempfile.gettempdir())):
        try:
            d = make_dir()
            d.mkdir(parents=True, exist_ok=True)
            (d / name).write_text(text)
            return d / name
        except Exception:
            continue
    return None


def _internal_error(exc: BaseException) -> None:
    import traceback

    log = _crash_log(exc)
    if _debug():
        traceback.print_exception(type(exc), exc, exc.__traceback__)
    where = f"The traceback is in {log}" if log else "The traceback could not be written to a log file"
    what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    err = errors.InternalError(
        f"forge stopped on an unexpected {what}. This is a bug in forge, not in your input. {where}; please "
        f"report it to forge's maintainers (open an issue with that file and the command you ran). "
        f"FORGE_DEBUG=1 prints the traceback here too.")
    console.err.print(f"[bold red]error:[/] [bold]{err.title}[/]: {escape(err.message)}", soft_wrap=True)
    sys.exit(err.exit_code)


def main() -> None:
    import signal

    signal.signal(signal.SIGTERM, _terminate)
    try:
        rc = app(prog_name="forge", standalone_mode=False)
        # Non-standalone typer returns (not raises) the exit code of an interrupted command.
        if isinstance(rc, int) and rc:
            if rc == 130:
                console.err.print("[bold red]interrupted[/]")
            sys.exit(rc)
    except errors.ForgeError as exc:
        if _debug():
            import traceback

            traceback.print_exception(type(exc), exc, exc.__traceback__)
        console.err.print(f"[bold red]error:[/] [bold]{exc.title}[/]: {escape(exc.message)}", soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        console.err.print("[bold red]interrupted[/]")
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(1)
    except Exception as exc:
        if _is_usage_error(exc):   # click's usage errors: the usage line, one line of error, exit 2
            _with_usage(exc)
            exc.show()
            sys.exit(exc.exit_code)
        _internal_error(exc)
