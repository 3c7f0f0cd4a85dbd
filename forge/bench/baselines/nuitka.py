"""nuitka: `nuitka --standalone` (no other flags) with this machine's Debian Python -> the .dist
directory in /app of the same slim rootfs."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from forge.bench.baselines.common import (
    host_deps,
    host_python,
    includes,
    python_version,
    recipes_dir,
    run_logged,
    stage_workload,
    tool_venv,
    workload_key,
)
from forge.bench.baselines.slim import _slim_variant
from forge.bench.measure import ProcessSpec
from forge.bench.model import Variant, log_path
from forge.workload import Workload


def build_nuitka_variant(w: Workload, client, rebuild: bool = False) -> Variant:
    python = host_python()
    venv = tool_venv("nuitka")
    deps = host_deps(w)
    key = workload_key(w).add("nuitka", str(venv), python_version(python), str(deps))
    key = key.add_file(recipes_dir() / "nuitka" / "requirements.txt").hex()

    def make_app(stage: Path) -> None:
        src = stage / "src"
        stage_workload(w, src)
        search = [src] + ([deps] if deps else [])
        inc = includes(w, python, search)
        log = log_path(f"nuitka-{w.name}")
        log.write_text("")
        out = stage / "out"
        out.mkdir()
        cmd = [venv / "bin" / "python", "-m", "nuitka", "--standalone", f"--output-dir={out}",
               "--output-filename=app", "--remove-output", "--assume-yes-for-downloads", "--no-progressbar",
               f"--jobs={os.cpu_count() or 2}"]
        cmd += [f"--include-module={m}" for m in inc]
        run_logged(cmd + [src / "forge_main.py"], log, "nuitka --standalone",
                   env={**os.environ, "PYTHONPATH": os.pathsep.join(map(str, search))}, cwd=out)
        shutil.move(str(out / "forge_main.dist"), stage / "app")
        shutil.rmtree(out)
        shutil.rmtree(src)

    def process(d: Path) -> ProcessSpec:
        return ProcessSpec((str(d / "app" / "app"),))

    return _slim_variant("nuitka", w, client, rebuild, key, make_app, ["/app/app"], {}, process,
                         {"process": "the .dist/app binary run on the host (same glibc as the image)",
                          "container": "/app/app"})
