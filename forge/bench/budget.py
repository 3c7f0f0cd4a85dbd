"""Where a forge binary's cold start goes: interpreter init, imports, the app's own init, the rest.

A compiled binary cannot be asked how long each of its phases took, so the phases are measured on the
same code run by the SDK's interpreter (the static musl CPython forge compiles with), under the same
flags the binary has (no site):

  interpreter init  wall time of `python3 -S -c pass` (exec -> exit; includes the interpreter's own
                    start-up imports: encodings, codecs, io, ...)
  imports           `python3 -S -X importtime -c "import forge_runtime; from MODULE import ATTR"`,
                    PYTHONPATH = the project, its dependencies and forge build's forge_runtime copy:
                    the cumulative time of every top-level import the interpreter did not already do
                    at init, minus the app module's self time
  app init          the app module's self time in the same run (its module body: globals, routes,
                    framework objects; its own imports are counted under imports)
  server start      the same server run by the SDK interpreter (python3 -S, exec -> first HTTP 200)
                    minus the three above: binding the socket, the loop, the first request and response
  compiled binary   the forge binary's measured process cold start (median) minus that interpreted
                    cold start: what the compiled start-up saves (negative) or costs (positive)

Every phase is the median over several runs, after one warm-up run (which writes the bytecode cache,
kept under the bench cache, never in the project).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from pathlib import Path

from forge import errors
from forge.bench.model import bench_cache
from forge.workload import Workload


def parse_importtime(stderr: str) -> list[tuple[int, int, int, str]]:
    """`-X importtime` lines -> [(level, self_us, cumulative_us, module)], in output order."""
    rows = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        parts = line[len("import time:"):].split("|", 2)
        if len(parts) != 3:
            continue
        name = parts[2][1:] if parts[2].startswith(" ") else parts[2]
        level = (len(name) - len(name.lstrip(" "))) // 2
        rows.append((level, int(parts[0]), int(parts[1]), name.strip()))
    return rows


def split_imports(rows: list[tuple[int, int, int, str]], init_modules: set[str], app_module: str) -> dict:
    """Top-level imports not done at interpreter init -> {imports_us, app_init_us, top: {module: cum_us}}."""
    top: dict[str, int] = {}
    app_self = 0
    for level, self_us, cum_us, name in rows:
        if level == 0 and name not in init_modules:
            top[name] = top.get(name, 0) + cum_us
        if name == app_module:
            app_self = self_us
    return {"imports_us": sum(top.values()) - app_self, "app_init_us": app_self, "top": top}


def _timed(argv: list[str], env: dict, cwd: Path) -> tuple[float, str]:
    t0 = time.perf_counter_ns()
    proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True)
    ms = (time.perf_counter_ns() - t0) / 1e6
    if proc.returncode != 0:
        raise errors.BenchFailed(f"{' '.join(argv)} failed (exit {proc.returncode}):\n{proc.stderr[-1500:]}")
    return ms, proc.stderr


def cold_start_budget(w: Workload, python_version: str | None, total_ms: float | None, runs: int = 5) -> dict:
    from forge.cache import cache_root
    from forge.prepare import prepare
    from forge.sdk.layout import find_sdk
    from forge.sdk.sources import DEFAULT_PYTHON

    sdk = find_sdk(python_version or DEFAULT_PYTHON)
    log_dir = cache_root() / "logs" / f"bench-budget-{w.name}"
    log_dir.mkdir(parents=True, exist_ok=True)
    search = prepare(w, sdk, log_dir / "pip.log", analyse=False).search_path
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
           "PYTHONPATH": os.pathsep.join(map(str, search)),
           "PYTHONPYCACHEPREFIX": str(bench_cache() / "pycache")}
    py = str(sdk.python)
    code = f"import forge_runtime; from {w.module} import {w.attr}"
    init_argv = [py, "-S", "-c", "pass"]
    imp_argv = [py, "-S", "-X", "importtime", "-c", code]

    _, init_err = _timed([py, "-S", "-X", "importtime", "-c", "pass"], env, w.project_dir)
    init_modules = {name for _, _, _, name in parse_importtime(init_err)}
    _timed(imp_argv, env, w.project_dir)  # warm-up: bytecode cache
    init_ms, imports_ms, app_ms, tops = [], [], [], []
    for _ in range(runs):
        init_ms.append(_timed(init_argv, env, w.project_dir)[0])
        _, err = _timed(imp_argv, env, w.project_dir)
        split = split_imports(parse_importtime(err), init_modules, w.module)
        imports_ms.append(split["imports_us"] / 1000)
        app_ms.append(split["app_init_us"] / 1000)
        tops.append(split["top"])
    # the same server, interpreted: exec -> first 200 (splits the rest into serving vs compiled code)
    from forge.bench.measure import ProcessSpec, run_process

    serve = ProcessSpec((py, "-S", "-c", f"{code} as app; forge_runtime.run(app)"), cwd=w.project_dir,
                        env={"PYTHONPATH": env["PYTHONPATH"], "PYTHONPYCACHEPREFIX": env["PYTHONPYCACHEPREFIX"]})
    run_process(serve, None)  # warm-up
    served_ms = [run_process(serve, None)["process_cold_start_ms"] for _ in range(runs)]
    med = lambda xs: round(statistics.median(xs), 3)  # noqa: E731
    phases = [
        {"phase": "interpreter init", "ms": med(init_ms),
         "how": "python3 -S -c pass, exec -> exit (SDK interpreter)"},
        {"phase": "imports", "ms": med(imports_ms),
         "how": "-X importtime: top-level imports after init, cumulative, minus the app module's self time"},
        {"phase": "app init", "ms": med(app_ms), "how": f"-X importtime: self time of {w.module}"},
    ]
    accounted = sum(p["ms"] for p in phases)
    interpreted = med(served_ms)
    phases.append({"phase": "server start + first response", "ms": round(interpreted - accounted, 3),
                   "how": "the same server run by the SDK interpreter (-S), exec -> first 200 (median "
                          f"{interpreted:.1f} ms), minus the phases above"})
    if total_ms is not None:
        phases.append({"phase": "compiled binary vs interpreter", "ms": round(total_ms - interpreted, 3),
                       "how": "forge binary's process cold start (median) minus the interpreted one: what "
                              "Nuitka's compiled start-up saves (< 0) or costs (> 0)"})
    modules = sorted({m for t in tops for m in t})
    top_imports = sorted(((m, med([t.get(m, 0) / 1000 for t in tops])) for m in modules), key=lambda x: -x[1])
    return {"workload": w.name, "interpreter": py, "python": sdk.version, "runs": runs,
            "total_ms": round(total_ms, 3) if total_ms is not None else None, "interpreted_ms": interpreted,
            "phases": phases, "top_imports_ms": [{"module": m, "ms": ms} for m, ms in top_imports[:10]]}
