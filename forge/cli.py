"""The `forge` command line. Commands parse options and call the pipeline; errors become one
paragraph on stderr and the error class's exit code."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from forge import __version__, console, errors
from forge.sdk import sources as srcs

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Compile Python edge workloads into tiny, fully static native artifacts.")
toolchain = typer.Typer(no_args_is_help=True, help="Build and inspect the static musl CPython SDK.")
app.add_typer(toolchain, name="toolchain")


def _version(value: bool) -> None:
    if value:
        console.out.print(f"forge {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print forge's version and exit.")) -> None:
    pass


PYTHON_OPT = typer.Option(srcs.DEFAULT_PYTHON, "--python", envvar="FORGE_PYTHON",
                          help="CPython version of the SDK (minor, e.g. 3.11).")


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
    src: Path = typer.Argument(..., help="A .py file, or a project directory with \\[tool.forge] entry."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Output directory (default dist/NAME)."),
    tag: Optional[str] = typer.Option(None, "--tag", "-t", help="Image name:tag (default NAME:latest)."),
    fmt: Optional[str] = typer.Option(None, "--format", help="oci (layout directory) or docker-archive."),
    compression: Optional[str] = typer.Option(None, "--compression", help="Layer compression: gzip or zstd."),
    load: bool = typer.Option(False, "--load", help="Load the image into the local Docker engine."),
    python: Optional[str] = typer.Option(None, "--python", envvar="FORGE_PYTHON", help="SDK Python version."),
    build_sdk: bool = typer.Option(False, "--build-sdk", help="Build the SDK first if it is missing."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Recompile even if the build cache has it."),
    target: Optional[str] = typer.Option(None, "--target",
                                         help="native (static x86_64 binary + image) or wasm (wasm32-wasi module)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
) -> None:
    """Compile a workload into a fully static binary and a reproducible FROM scratch image."""
    from forge.build import build, options_from

    opts = options_from(src, output=output, tag=tag, format=fmt, compression=compression,
                        load=load, python=python, build_sdk=build_sdk, use_cache=not no_cache, target=target)
    summary = build(opts)
    if as_json:
        print(json.dumps(summary, indent=2, sort_keys=True))
        return
    mib = 2**20
    if summary["target"] == "wasm":
        from forge.targets.wasm import print_summary

        print_summary(summary)
        return
    console.out.print(f"[bold green]built[/] {summary['tag']}  {summary['digest']}")
    console.out.print(f"  binary  {summary['binary']}  ({summary['binary_size'] / mib:.1f} MiB, static)")
    console.out.print(f"  image   {summary['image']}  ({summary['image_size_compressed'] / mib:.1f} MiB "
                      f"compressed, {summary['image_size_uncompressed'] / mib:.1f} MiB uncompressed)")
    console.out.print(f"  sbom    {summary['sbom']}")
    console.out.print(f"  time    {summary['build_seconds']:.1f}s"
                      + (" (compile cached)" if summary["cached_compile"] else ""))


@app.command("bench")
def bench_cmd(
    src: Path = typer.Argument(Path("examples/hello"), help="A workload, or a forge build output directory."),
    runs: int = typer.Option(10, "--runs", "-n", help="Measured runs per variant (after one warm-up run)."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Results directory (default PROJECT/.forge/bench)."),
    as_json: bool = typer.Option(False, "--json", help="Print results.json on stdout."),
    variants: Optional[str] = typer.Option(None, "--variants",
                                           help="Comma-separated: forge,cpython,nuitka,pyinstaller,floor,wasm (default all)."),
    budget: bool = typer.Option(False, "--budget", help="Only the forge binary's cold-start budget."),
    rebuild: bool = typer.Option(False, "--rebuild", help="Rebuild forge (no compile cache) and the baselines."),
    wrk_seconds: float = typer.Option(3.0, "--wrk-seconds", help="Length of each wrk run."),
    cold_build: bool = typer.Option(True, "--cold-build/--no-cold-build",
                                    help="Time an uncached forge build when its compile was cached and none is on record."),
    workload: Optional[Path] = typer.Option(None, "--workload", help="The baselines' workload when SRC is a build output."),
    python: Optional[str] = typer.Option(None, "--python", envvar="FORGE_PYTHON", help="SDK Python version."),
) -> None:
    """Measure the forge image against CPython, Nuitka, PyInstaller and the static C floor (docs/bench.md)."""
    from forge.bench.run import BenchOptions, parse_variants, run_bench, run_budget_only

    opts = BenchOptions(src=src, runs=runs, out_dir=output, variants=parse_variants(variants), rebuild=rebuild,
                        wrk_seconds=wrk_seconds, cold_build=cold_build, workload=workload, python=python,
                        command=" ".join(["forge", *sys.argv[1:]]))
    doc = run_budget_only(opts) if budget else run_bench(opts)
    if as_json:
        print(json.dumps(doc, indent=2))
        return
    from forge.bench.report import budget_markdown, markdown

    console.out.print(budget_markdown(doc) if budget else markdown(doc), markup=False)


deploy_app = typer.Typer(no_args_is_help=True, help="Generate a deployment project for an edge platform.")
app.add_typer(deploy_app, name="deploy")
ci_app = typer.Typer(no_args_is_help=True, help="Generate a CI workflow that builds, pushes and deploys.")
app.add_typer(ci_app, name="ci")


@app.command("push")
def push_cmd(
    out: Path = typer.Argument(..., help="A forge build output: its directory, an OCI image layout or a docker archive."),
    ref: str = typer.Argument(..., help="Where to push: [registry[:port]/]repository[:tag] (tag default: latest)."),
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
    project: Path = typer.Option(Path("."), "--project", help="The forge project (\\[tool.forge.cloudflare] settings)."),
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
    target: str = typer.Option("wasm", "--target", help="What the Worker runs: wasm (the only choice on Workers)."),
    from_output: Optional[Path] = typer.Option(None, "--from",
                                               help="A `forge build --target wasm` output (default: build the project)."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Where to write (default PROJECT/deploy/workers)."),
    force: bool = typer.Option(False, "--force", help="Overwrite files you changed since forge wrote them."),
    project: Path = typer.Option(Path("."), "--project", help="The forge project."),
) -> None:
    """Write a Cloudflare Workers project that runs the workload's wasm module (WASI shim, wrangler.toml)."""
    from forge.deploy.workers import FREE_LIMIT, PAID_LIMIT, generate

    r = generate(project, target=target, from_output=from_output, out_dir=output, force=force)
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


def main() -> None:
    import signal

    signal.signal(signal.SIGTERM, _terminate)
    try:
        rc = app(standalone_mode=False)
        # Non-standalone typer returns (not raises) the exit code of an interrupted command.
        if isinstance(rc, int) and rc:
            if rc == 130:
                console.err.print("[bold red]interrupted[/]")
            sys.exit(rc)
    except errors.ForgeError as exc:
        console.err.print(f"[bold red]error:[/] [bold]{exc.title}[/]: {escape(exc.message)}", soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        console.err.print("[bold red]interrupted[/]")
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(1)
    except Exception as exc:  # click usage errors
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
