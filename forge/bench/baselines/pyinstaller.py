"""pyinstaller: `pyinstaller --onefile`, made static by `staticx`, alone in a FROM scratch image."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from forge.bench.baselines.common import (
    _cached_build,
    host_deps,
    host_python,
    includes,
    recipes_dir,
    run_logged,
    scratch_sizes,
    scratch_variant,
    stage_workload,
    tool_venv,
    workload_key,
)
from forge.bench.model import Variant, log_path
from forge.workload import Workload


def build_pyinstaller_variant(w: Workload, client, rebuild: bool = False) -> Variant:
    python = host_python()
    venv = tool_venv("pyinstaller")
    deps = host_deps(w)
    key = workload_key(w).add("pyinstaller", "labelled", str(venv)).add_file(recipes_dir() / "pyinstaller" / "requirements.txt")
    key = key.add(str(deps)).hex()

    def build(stage: Path) -> dict:
        src = stage / "src"
        stage_workload(w, src)
        search = [src] + ([deps] if deps else [])
        inc = includes(w, python, search)
        log = log_path(f"pyinstaller-{w.name}")
        log.write_text("")
        cmd = [venv / "bin" / "pyinstaller", "--onefile", "--noconfirm", "--log-level", "WARN", "--name", "app",
               "--distpath", stage / "onefile", "--workpath", stage / "work", "--specpath", stage / "work"]
        for p in search:
            cmd += ["--paths", p]
        for m in inc:
            cmd += ["--hidden-import", m]
        run_logged(cmd + [src / "forge_main.py"], log, "pyinstaller --onefile")
        (stage / "app").mkdir()
        run_logged([venv / "bin" / "staticx", stage / "onefile" / "app", stage / "app" / "app"], log, "staticx")
        os.chmod(stage / "app" / "app", 0o755)
        shutil.rmtree(stage / "work")
        shutil.rmtree(stage / "onefile")
        c, u = scratch_sizes(stage / "app", "pyinstaller")
        return {"size_compressed": c, "size_uncompressed": u, "includes": list(inc)}

    d, meta, cached = _cached_build(f"pyinstaller-{w.name}", key, build, rebuild)
    tag = f"forge-bench/pyinstaller-{w.name}:{key[:12]}"
    return scratch_variant("pyinstaller", d, meta, cached, tag, client,
                           "the staticx binary run on the host (bootloaders + app: RSS summed)")
