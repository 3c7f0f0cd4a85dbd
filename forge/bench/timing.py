"""forge's own build, timed for the bench: a compile served from forge's build cache says nothing about
build time, so the time of the last uncached build of the same image digest is kept on record (used by
forge.bench.run for the forge variant and by the wasm baseline)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from forge import console
from forge.bench.model import bench_cache


def _build_times_file() -> Path:
    return bench_cache() / "forge-build-times.json"


def forge_build_time(summary: dict) -> tuple[float | None, bool]:
    """(cold build seconds, from the record?): a compile served from forge's build cache says nothing
    about build time, so the time of the last uncached build of the same image digest is used."""
    path = _build_times_file()
    try:
        times = json.loads(path.read_text())
    except (OSError, ValueError):
        times = {}
    if not summary.get("cached_compile"):
        times[summary["digest"]] = summary["build_seconds"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(times, indent=2, sort_keys=True))
        return summary["build_seconds"], False
    if summary["digest"] in times:
        return times[summary["digest"]], True
    return None, True


def timed_build(bopts, cold_build: bool) -> tuple[dict, float | None, bool]:
    """forge.build.build(bopts) -> (summary, cold build seconds or None, time from the record?). When the
    compile came from forge's build cache and no uncached build of this image digest is on record, and
    cold_build is set, build once more without the cache to time it (the output is the same bytes)."""
    from forge.build import build

    summary = build(bopts)
    build_s, cached = forge_build_time(summary)
    if build_s is None and cold_build:
        console.info(f"timing a cold build of {summary['name']} ({bopts.target}): its compile came from forge's "
                     "build cache and no uncached build of this image is on record")
        summary = build(replace(bopts, use_cache=False))
        build_s, cached = forge_build_time(summary)
    return summary, build_s, cached
