"""`forge bench`: build forge's image and the baselines, measure them interleaved, write the report.

Order of work:
  1. forge's image, through forge's own pipeline (forge.build.build), or a built output directory;
  2. the baselines (forge.bench.baselines; cached on disk, keyed by a hash of their inputs);
  3. N + 1 rounds; round 0 is the warm-up (one run of every variant, discarded). In every round each
     variant runs once as a process, then each once as a container, round-robin (the order rotates
     by one variant per round), so a slow patch of a shared machine hits every variant alike;
  4. the cold-start budget of the forge binary (forge.bench.budget);
  5. results.json, results.md, results.png, results.svg (forge.bench.report).
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass, replace
from pathlib import Path

from forge import __version__, console, errors
from forge.bench import stats
from forge.bench.baselines import BUILDERS, build_floor_variant, wasm_variant
from forge.bench.baselines.common import drop_other_tags, has_image
from forge.bench.model import LABELS, Variant, unavailable
from forge.bench.timing import forge_build_time, timed_build  # noqa: F401  (forge_build_time: part of the bench API)
from forge.bench.measure import ProcessSpec, WrkSettings, run_container, run_process, wrk_path
from forge import output
from forge.workload import Workload, resolve

ALL_VARIANTS = ("forge", "cpython", "nuitka", "pyinstaller", "floor", "wasm")
DEFAULT_RUNS = 10
DEFAULT_SRC = Path("examples/hello")

# figure -> (label, unit, which run produces it, higher is better)
FIGURES: dict[str, tuple[str, str, str, bool]] = {
    "image_size_compressed": ("image, compressed", "bytes", "build", False),
    "image_size_uncompressed": ("image, uncompressed", "bytes", "build", False),
    "process_cold_start_ms": ("process cold start", "ms", "process", False),
    "container_cold_start_ms": ("container cold start", "ms", "container", False),
    "idle_rss_kb": ("idle RSS (process)", "kB", "process", False),
    # RssAnon: the memory only this instance holds. The rest of RSS is file pages of the binary or
    # libraries: page cache, shared by every instance of the image on a host and reclaimable.
    "idle_private_kb": ("idle private memory (RssAnon)", "kB", "process", False),
    "container_idle_rss_kb": ("idle RSS (container)", "kB", "container", False),
    "peak_rss_kb": ("peak RSS under load", "kB", "process", False),
    "throughput_rps": ("throughput", "req/s", "process", True),
    "build_seconds": ("build time", "s", "build", False),
    "container_create_ms": ("docker create (untimed in cold start)", "ms", "container", False),
    "container_cgroup_memory_kb": ("container cgroup memory", "kB", "container", False),
}
RATIO_FIGURES = tuple(k for k in FIGURES if k not in ("container_create_ms", "container_cgroup_memory_kb"))


@dataclass
class BenchOptions:
    src: Path = DEFAULT_SRC                  # a workload, or a forge build output directory
    runs: int = DEFAULT_RUNS
    out_dir: Path | None = None              # default <project>/.forge/bench
    variants: tuple[str, ...] = ALL_VARIANTS
    wrk_seconds: float = 3.0
    wrk_connections: int = 16
    rebuild: bool = False                    # rebuild forge (no compile cache) and the baselines
    cold_build: bool = True                  # time an uncached forge build if none is on record
    workload: Path | None = None             # the baselines' workload when src is a build output
    python: str | None = None
    also_pythons: tuple[str, ...] = ()       # more SDK versions, each a forge variant "forge-py3.14"
    budget: bool = True
    containers: bool = True
    docker_client: object = None             # an engine client (else docker.from_env() when containers)
    command: str | None = None               # the command line, for the report


def parse_variants(text: str | None) -> tuple[str, ...]:
    if not text:
        return ALL_VARIANTS
    names = tuple(dict.fromkeys(v.strip().lower() for v in text.split(",") if v.strip()))
    unknown = [n for n in names if n not in ALL_VARIANTS]
    if unknown:
        raise errors.ConfigError(f"unknown bench variant(s) {', '.join(unknown)}; choose from {', '.join(ALL_VARIANTS)}.")
    if "forge" not in names:
        names = ("forge", *names)   # every ratio is relative to forge
    return names


def _docker(opts: BenchOptions):
    if not opts.containers:
        return None
    if opts.docker_client is not None:
        return opts.docker_client
    from forge.publish.daemon import docker_client

    try:
        return docker_client()
    except errors.DockerUnavailable as exc:
        console.warn(f"no container figures: {exc.message}")
        return None


# --- forge itself -------------------------------------------------------------------------------------
def is_build_output(path: Path) -> bool:
    return output.is_output(path)


def build_forge(opts: BenchOptions, out_dir: Path, client, name: str = "forge") -> tuple[Variant, dict]:
    from forge.image.read import load_image
    from forge.publish import DaemonPublisher
    from forge.publish.registry import image_path_of

    if is_build_output(opts.src):
        summary = output.read(opts.src).to_summary()
        build_s, cached = None, True
        note = f"prebuilt output {opts.src} (no build time)"
    else:
        from forge.build import options_from

        bopts = options_from(opts.src, output=out_dir / "forge-build", python=opts.python,
                             use_cache=not opts.rebuild)
        summary, build_s, cached = timed_build(bopts, opts.cold_build)
        note = ("compile cached and no uncached build of this digest recorded: run with --rebuild to measure it"
                if build_s is None else "")
    if is_build_output(opts.src):
        image_path, binary = image_path_of(opts.src), opts.src / Path(summary["binary"]).name
    else:
        image_path, binary = Path(summary["image"]), Path(summary["binary"])
    image = load_image(image_path)
    tag = None
    if client is not None:
        suffix = "" if name == "forge" else name[len("forge"):]
        tag = f"forge-bench/forge-{summary['name']}{suffix}:{image.digest[7:19]}"
        if not has_image(client, tag):
            DaemonPublisher(tag, client=client).publish(image)
            drop_other_tags(client, tag)
    label = LABELS["forge"] if name == "forge" else f"{LABELS['forge']}, CPython {summary['python']}"
    v = Variant(name, label, image=tag, size_compressed=image.compressed_size,
                size_uncompressed=image.uncompressed_size, build_seconds=build_s, build_cached=cached,
                process=ProcessSpec((str(binary),)),
                reload=(lambda: DaemonPublisher(tag, client=client).publish(image)) if tag else None,
                notes={"process": "the static binary run on the host", "image": "forge build (FROM scratch)",
                       **({"build": note} if note else {})})
    return v, summary


# --- measuring ----------------------------------------------------------------------------------------
def _rotate(items: list, k: int) -> list:
    if not items:
        return items
    k %= len(items)
    return items[k:] + items[:k]


def _run_once(v: Variant, kind: str, wrk: WrkSettings | None, client) -> dict:
    if kind == "process":
        return v.in_process() if v.in_process is not None else run_process(v.process, wrk)
    from docker.errors import ImageNotFound

    try:
        return run_container(client, v.image)
    except ImageNotFound:
        if v.reload is None:
            raise
        # something else on the machine removed the image (e.g. a test removing an identical image by
        # ID): put it back and run again
        v.reload()
        return run_container(client, v.image)


def measure(variants: list[Variant], runs: int, wrk: WrkSettings | None, client) -> tuple[dict, dict]:
    """-> ({variant: {figure: [samples]}}, {variant: [errors]}), warm-up round excluded."""
    samples: dict[str, dict[str, list[float]]] = {v.name: {} for v in variants}
    failures: dict[str, list[str]] = {v.name: [] for v in variants}
    proc_vs = [v for v in variants if v.process is not None or v.in_process is not None]
    cont_vs = [v for v in variants if v.image is not None and client is not None]
    total = (runs + 1) * (len(proc_vs) + len(cont_vs))
    with console.steps(f"bench: {runs} runs + 1 warm-up, interleaved", total) as bar:
        for r in range(runs + 1):
            tag = "warm-up" if r == 0 else f"run {r}/{runs}"
            for kind, group in (("process", proc_vs), ("container", cont_vs)):
                for v in _rotate(group, r):
                    with bar.step(f"{tag} {v.name} {kind}"):
                        try:
                            out = _run_once(v, kind, wrk, client)
                        except Exception as exc:  # noqa: BLE001 - one failed run is reported, the bench goes on
                            msg = exc.message if isinstance(exc, errors.ForgeError) else f"{type(exc).__name__}: {exc}"
                            failures[v.name].append(f"{tag} {kind}: {msg}")
                            continue
                        if r == 0:
                            continue
                        for k, val in out.items():
                            if k in FIGURES:
                                samples[v.name].setdefault(k, []).append(float(val))
    return samples, failures


# --- the whole thing ------------------------------------------------------------------------------------
def machine_info(client) -> dict:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cpus": os.cpu_count(), "kernel": platform.release(), "machine": platform.machine(),
            "os": _os_name(), "loadavg": list(os.getloadavg())}
    if client is not None:
        try:
            info["docker"] = client.version().get("Version")
        except Exception:  # noqa: BLE001 - informational only
            pass
    return info


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.system()


def default_out_dir(opts: BenchOptions, w: Workload | None) -> Path:
    project = w.project_dir if w is not None else Path.cwd()
    return project / ".forge" / "bench"


def _workload(opts: BenchOptions) -> Workload | None:
    if is_build_output(opts.src):
        return resolve(opts.workload) if opts.workload else None
    return resolve(opts.workload or opts.src)


def build_variants(opts: BenchOptions, w: Workload | None, out_dir: Path, client) -> tuple[list[Variant], dict]:
    forge_v, summary = build_forge(opts, out_dir, client)
    variants = [forge_v]
    for python in opts.also_pythons:     # the same workload on another SDK version, side by side
        v, _ = build_forge(replace(opts, python=python), out_dir / f"py{python}", client, name=f"forge-py{python}")
        variants.append(v)
    if "wasm" in opts.variants:
        # forge's own build pipeline, with its own progress bar: not inside the baselines' bar (one live
        # display at a time)
        variants.append(wasm_variant(w, opts.workload or opts.src, out_dir, opts.python, opts.rebuild,
                                     opts.cold_build))
    wanted = [n for n in opts.variants if n not in ("forge", "wasm")]
    if wanted:
        with console.steps("bench: baselines", len(wanted)) as bar:
            for name in wanted:
                with bar.step(name):
                    variants.append(_build_baseline(name, opts, w, client))
    order = {n: i for i, n in enumerate(("forge", *(f"forge-py{p}" for p in opts.also_pythons), *opts.variants))}
    variants.sort(key=lambda v: order.get(v.name, len(order)))
    return variants, summary


def _build_baseline(name: str, opts: BenchOptions, w: Workload | None, client) -> Variant:
    if name == "floor":
        return build_floor_variant(client, opts.rebuild)
    if w is None:
        return unavailable(name, LABELS[name], "SRC is a built output: pass --workload to build this baseline "
                           "from the workload's sources")
    return BUILDERS[name](w, client, opts.rebuild)


def run_bench(opts: BenchOptions) -> dict:
    """Build, measure, report. Returns the results document (also written to out_dir/results.json)."""
    from forge.bench import report
    from forge.bench.budget import cold_start_budget

    report.require_chart_libraries()   # first: the charts are written after every measurement
    if opts.runs < 1:
        raise errors.ConfigError(f"--runs must be at least 1, not {opts.runs}.")
    started = time.monotonic()
    w = _workload(opts)
    if w is not None and w.attr is None:
        raise errors.BenchFailed(f"{w.module_path} is a program, not an app served over HTTP ([tool.forge] entry "
                                 "without :attr); forge bench measures HTTP workloads.")
    out_dir = (opts.out_dir or default_out_dir(opts, w)).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    client = _docker(opts)
    wrk = None
    if wrk_path():
        wrk = WrkSettings(seconds=opts.wrk_seconds, connections=opts.wrk_connections)
    else:
        console.warn("wrk is not installed (apt-get install wrk): no throughput or peak-RSS-under-load figures")
    date = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    machine = machine_info(client)

    variants, summary = build_variants(opts, w, out_dir, client)
    ready = [v for v in variants if v.available]
    samples, failures = measure(ready, opts.runs, wrk, client)

    budget = None
    if opts.budget and w is not None and not is_build_output(opts.src):
        total = samples.get("forge", {}).get("process_cold_start_ms")
        try:
            budget = cold_start_budget(w, opts.python, stats.summarize(total)["median"] if total else None,
                                       runs=max(3, min(opts.runs, 10)))
        except errors.ForgeError as exc:
            console.warn(f"no cold-start budget: {exc.message}")
    machine["loadavg_end"] = list(os.getloadavg())
    doc = assemble(opts, w, summary, variants, samples, failures, wrk, machine, date, budget,
                   time.monotonic() - started)
    report.write_all(doc, out_dir)
    return doc


def figures_of(v: Variant, samples: dict[str, list[float]]) -> dict:
    figs: dict[str, dict] = {}
    if v.size_compressed is not None:
        figs["image_size_compressed"] = stats.single(v.size_compressed)
    if v.size_uncompressed is not None:
        figs["image_size_uncompressed"] = stats.single(v.size_uncompressed)
    if v.build_seconds is not None:
        figs["build_seconds"] = stats.single(v.build_seconds)
    for k, xs in samples.items():
        if xs:
            figs[k] = stats.summarize(xs)
    return {k: figs[k] for k in FIGURES if k in figs}


def assemble(opts, w, summary, variants, samples, failures, wrk, machine, date, budget, seconds) -> dict:
    vdoc: dict[str, dict] = {}
    for v in variants:
        if not v.available:
            vdoc[v.name] = {"name": v.name, "label": v.label, "available": False, "reason": v.reason}
            continue
        vdoc[v.name] = {"name": v.name, "label": v.label, "available": True, "image": v.image,
                        "build_cached": v.build_cached, "notes": v.notes,
                        "figures": figures_of(v, samples.get(v.name, {})),
                        "errors": failures.get(v.name, [])}
    ratios: dict[str, dict] = {}
    forge_figs = vdoc["forge"]["figures"]
    for name, d in vdoc.items():
        if name == "forge" or not d["available"]:
            continue
        ratios[name] = {k: stats.compare(d["figures"][k], forge_figs[k])
                        for k in RATIO_FIGURES if k in d["figures"] and k in forge_figs}
    cold = {}
    for name, d in vdoc.items():
        if d["available"]:
            f = d["figures"]
            cold[name] = {"process_ms": f.get("process_cold_start_ms", {}).get("median"),
                          "container_ms": f.get("container_cold_start_ms", {}).get("median")}
    return {
        "schema": 1,
        "tool": f"forge {__version__} bench",
        "command": opts.command,
        "date": date,
        "machine": machine,
        "workload": {"name": summary.get("name"), "src": str(opts.src),
                     "project": str(w.project_dir) if w else None,
                     "entry": f"{w.module}:{w.attr}" if w else None,
                     "forge_digest": summary.get("digest")},
        "settings": {"runs": opts.runs, "warmup_runs": 1, "order": "round-robin, rotated by one each round",
                     "wrk": ({"threads": wrk.threads, "connections": wrk.connections, "seconds": wrk.seconds}
                             if wrk else None),
                     "noise_limit": stats.NOISE_LIMIT, "overlap_limit": stats.OVERLAP_LIMIT,
                     "container_cold_start": "docker create (untimed), then start -> first HTTP 200 via the "
                                             "published port",
                     "process_cold_start": "perf_counter_ns before Popen -> first HTTP 200 on loopback"},
        "figures": {k: {"label": lab, "unit": unit, "higher_is_better": hib}
                    for k, (lab, unit, _, hib) in FIGURES.items()},
        "variants": vdoc,
        "ratios": ratios,
        "cold_start": cold,
        "budget": budget,
        "bench_seconds": round(seconds, 1),
    }


def run_budget_only(opts: BenchOptions) -> dict:
    """`forge bench --budget`: build forge's binary, time N process cold starts, break them down."""
    from forge.bench import report
    from forge.bench.budget import cold_start_budget

    w = _workload(opts)
    if w is None:
        raise errors.BenchFailed("--budget needs the workload's sources (SRC or --workload).")
    out_dir = (opts.out_dir or default_out_dir(opts, w)).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    forge_v, _ = build_forge(replace(opts, variants=("forge",), cold_build=False), out_dir, None)
    samples, failures = measure([forge_v], opts.runs, None, None)
    if failures["forge"]:
        raise errors.BenchFailed("; ".join(failures["forge"]))
    total = stats.summarize(samples["forge"]["process_cold_start_ms"])["median"]
    budget = cold_start_budget(w, opts.python, total, runs=max(3, min(opts.runs, 10)))
    (out_dir / "budget.md").write_text(report.budget_markdown(budget) + "\n")
    (out_dir / "budget.json").write_text(json.dumps(budget, indent=2) + "\n")
    return budget
