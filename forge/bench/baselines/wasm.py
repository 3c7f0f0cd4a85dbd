"""wasm: `forge build --target wasm`, its module run in forge's own process with wasmtime."""

from __future__ import annotations

import json
import time
from pathlib import Path

from forge import errors
from forge.bench.measure import BENCH_ENV
from forge.bench.model import LABELS, Variant, unavailable
from forge.bench.timing import timed_build
from forge.workload import Workload

WASM_REQUEST = b'{"id": 1, "method": "GET", "path": "/"}\n'


def run_wasm_once(cwasm: Path) -> dict:
    """Cold start of the wasm module in this (warm) process: load the precompiled module, instantiate
    it, serve one `GET /` from stdin (JSON lines) and exit; the response must be status 200."""
    from forge.wasm.run import run

    t0 = time.perf_counter_ns()
    r = run(cwasm, stdin=WASM_REQUEST, env=dict(BENCH_ENV))
    t1 = time.perf_counter_ns()
    try:
        status = json.loads(r.stdout.splitlines()[0])["status"]
    except (IndexError, ValueError, KeyError, TypeError):
        status = None
    if r.trap or r.exit_code != 0 or status != 200:
        raise errors.BenchFailed(f"the wasm module answered {status!r} (exit {r.exit_code}, trap {r.trap}): "
                                 f"{r.stderr.decode(errors='replace')[-500:]}")
    return {"process_cold_start_ms": (t1 - t0) / 1e6}


def wasm_variant(w: Workload | None, src: Path, out_dir: Path, python: str | None, rebuild: bool = False,
                 cold_build: bool = True) -> Variant:
    """forge build --target wasm, when this forge has the target (forge/targets/wasm.py)."""
    if not (Path(__file__).resolve().parents[2] / "targets" / "wasm.py").is_file():
        return unavailable("wasm", LABELS["wasm"], "not available: this forge has no wasm target "
                           "(forge/targets/wasm.py)")
    if w is None:
        return unavailable("wasm", LABELS["wasm"], "SRC is a built output: pass --workload to build the wasm module")
    from forge.build import options_from

    try:
        summary, build_s, cached = timed_build(options_from(src, target="wasm", output=out_dir / "wasm-build",
                                                            python=python, use_cache=not rebuild), cold_build)
    except errors.ForgeError as exc:
        return unavailable("wasm", LABELS["wasm"], f"not available for this workload: {exc.title}: {exc.message}")
    cwasm = Path(summary["precompiled"])
    return Variant("wasm", LABELS["wasm"], size_compressed=summary["module_size_gzip"],
                   size_uncompressed=summary["module_size"], build_seconds=build_s, build_cached=cached,
                   in_process=lambda: run_wasm_once(cwasm),
                   notes={"image": "no image: sizes are the .wasm module (gzip, raw)",
                          "process": "in forge's process with wasmtime (PyPI) already loaded: load app.cwasm, "
                                     "instantiate, serve one GET / over stdin (JSON lines), exit; no HTTP, so "
                                     "no RSS, throughput or container figures",
                          "preinitialized": str(summary.get("preinitialized"))})
