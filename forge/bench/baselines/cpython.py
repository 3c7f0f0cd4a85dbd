"""cpython: the workload, forge_runtime and their .pyc in /app of the Debian slim rootfs;
CMD python3 -m forge_runtime MODULE:ATTR."""

from __future__ import annotations

import shutil
from pathlib import Path

from forge.bench.baselines.common import (
    host_deps,
    host_python,
    python_version,
    run_logged,
    stage_workload,
    workload_key,
)
from forge.bench.baselines.slim import _slim_variant
from forge.bench.measure import ProcessSpec
from forge.bench.model import Variant, log_path
from forge.workload import Workload


def build_cpython_variant(w: Workload, client, rebuild: bool = False) -> Variant:
    python = host_python()
    deps = host_deps(w)
    key = workload_key(w).add("cpython", python_version(python), str(deps)).hex()

    def make_app(stage: Path) -> None:
        app = stage / "app"
        stage_workload(w, app)
        (app / "forge_main.py").unlink()
        if deps:
            shutil.copytree(deps, app / "site")
        # bytecode ahead of time, as a deployment would (the container user cannot write /app);
        # unchecked-hash: valid whatever the files' mtimes become in the image
        run_logged([python, "-m", "compileall", "-q", "--invalidation-mode", "unchecked-hash", app],
                   log_path(f"cpython-{w.name}"), "compileall")

    env = {"PYTHONPATH": "/app/site"} if deps else {}
    argv = ["python3", "-m", "forge_runtime", f"{w.module}:{w.attr}"]

    def process(d: Path) -> ProcessSpec:
        penv = {"PYTHONPATH": str(d / "app" / "site")} if deps else {}
        return ProcessSpec((str(python), *argv[1:]), cwd=d / "app", env=penv)

    return _slim_variant("cpython", w, client, rebuild, key, make_app, argv, env, process,
                         {"process": f"{python} -m forge_runtime on the host, in the same /app files",
                          "container": " ".join(argv)})
