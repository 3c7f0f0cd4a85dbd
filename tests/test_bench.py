"""forge bench: the statistics and the spread rule, the cold-start budget's parsing, the report writer,
and the whole bench end to end in a reduced mode (hello, N=2, forge against the static C floor, the
cheapest baseline: the debootstrap-based baselines are never built here).

No test asserts anything about speed: only that every figure exists, is sane (> 0) and that the
ratios agree with the medians they come from.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from forge import errors
from forge.bench import stats
from forge.bench.budget import parse_importtime, split_imports

REPO = Path(__file__).resolve().parents[1]
HELLO = REPO / "examples" / "hello"


# --- statistics and the spread rule ---------------------------------------------------------------------
def test_summarize_is_median_min_max():
    s = stats.summarize([5.0, 1.0, 3.0, 100.0])
    assert (s["median"], s["min"], s["max"], s["n"]) == (4.0, 1.0, 100.0, 4)
    assert stats.summarize([2.0])["median"] == 2.0
    with pytest.raises(ValueError):
        stats.summarize([])


def test_ratio_is_baseline_median_over_forge_median():
    forge = stats.summarize([10.0, 11.0, 12.0])
    base = stats.summarize([30.0, 33.0, 36.0])
    r = stats.compare(base, forge)
    assert r["meaningful"] and r["reason"] is None
    assert r["ratio"] == pytest.approx(33.0 / 11.0, abs=1e-3)


def test_overlapping_ranges_give_no_ratio():
    r = stats.compare(stats.summarize([10.0, 12.0, 14.0]), stats.summarize([11.0, 12.5, 13.0]))
    assert not r["meaningful"] and "overlap" in r["reason"]
    assert r["ratio"] == pytest.approx(12.0 / 12.5, rel=1e-3)   # still stored, for checking


def test_too_wide_a_spread_gives_no_ratio():
    r = stats.compare(stats.summarize([100.0, 400.0, 900.0]), stats.summarize([1.0, 1.1, 1.2]))
    assert not r["meaningful"] and "spread" in r["reason"]


def test_one_outlier_does_not_void_a_clear_difference():
    # a neighbour's compile slowed one forge run down 3x: the middle halves are still far apart
    forge = stats.summarize([40.0, 41.0, 39.0, 42.0, 40.5, 120.0, 41.5, 39.5])
    floor = stats.summarize([1.0, 0.9, 1.1, 1.0, 0.95, 1.05, 7.0, 1.0])
    r = stats.compare(floor, forge)
    assert r["meaningful"], r["reason"]
    assert r["ratio"] == pytest.approx(floor["median"] / forge["median"], rel=1e-3)


def test_single_values_always_compare():
    r = stats.compare(stats.single(300.0), stats.single(100.0))
    assert r == {"ratio": 3.0, "meaningful": True, "reason": None}


def test_quartiles_and_overlap_edges():
    s = stats.summarize([1.0, 2.0, 3.0, 4.0, 5.0])
    assert (s["p25"], s["median"], s["p75"]) == (2.0, 3.0, 4.0)
    a = {"p25": 1.0, "p75": 2.0}
    assert stats.overlap_fraction(a, {"p25": 3.0, "p75": 4.0}) == 0.0
    assert stats.overlap_fraction(a, {"p25": 1.5, "p75": 1.5}) == 1.0      # a point inside
    assert stats.overlap_fraction(a, {"p25": 1.5, "p75": 3.5}) == pytest.approx(0.5)
    assert stats.noise({"p25": 0.0, "p75": 1.0, "median": 0.0}) == math.inf
    assert stats.noise(stats.single(5.0)) == 0.0


# --- the cold-start budget -------------------------------------------------------------------------------
IMPORTTIME = """\
import time: self [us] | cumulative | imported package
import time:       100 |        100 | _io
import time:        50 |         50 | encodings
import time:       200 |        200 |     _json
import time:       300 |        500 |   json.decoder
import time:       400 |        900 | json
import time:        70 |       1270 | forge_runtime
import time:        30 |         30 |   time
import time:       250 |        280 | app
"""


def test_importtime_parsing_and_split():
    rows = parse_importtime(IMPORTTIME)
    assert rows[0] == (0, 100, 100, "_io")
    assert (2, 200, 200, "_json") in rows and (1, 300, 500, "json.decoder") in rows
    split = split_imports(rows, init_modules={"_io", "encodings"}, app_module="app")
    # json 900 + forge_runtime 1270 + app 280, minus app's own 250 us
    assert split["imports_us"] == 900 + 1270 + 280 - 250
    assert split["app_init_us"] == 250
    assert set(split["top"]) == {"json", "forge_runtime", "app"}


def test_budget_against_the_sdk_interpreter(sdk):
    from forge.bench.budget import cold_start_budget
    from forge.workload import resolve

    b = cold_start_budget(resolve(HELLO), None, total_ms=50.0, runs=3)
    phases = {p["phase"]: p["ms"] for p in b["phases"]}
    assert phases["interpreter init"] > 0 and phases["imports"] > 0 and phases["app init"] >= 0
    assert b["interpreted_ms"] > 0
    assert phases["compiled binary vs interpreter"] == pytest.approx(50.0 - b["interpreted_ms"], abs=1e-3)
    assert any(t["module"] == "forge_runtime" for t in b["top_imports_ms"])


# --- options, sources -------------------------------------------------------------------------------------
def test_variant_names_are_checked_and_forge_is_always_in():
    from forge.bench.run import parse_variants

    assert parse_variants("floor") == ("forge", "floor")
    assert parse_variants(None)[0] == "forge"
    with pytest.raises(errors.ConfigError, match="unknown bench variant"):
        parse_variants("forge,docker-slim")


def test_debian_mirror_comes_from_the_apt_sources():
    from forge.bench.baselines import debian_source

    if not list(Path("/etc/apt/sources.list.d").glob("*.sources")) and not Path("/etc/apt/sources.list").is_file():
        pytest.skip("no apt sources on this machine")
    uri, keyring = debian_source()
    assert uri.startswith(("http://", "https://", "file:/"))
    assert keyring is None or Path(keyring).is_file()


def test_wasm_variant_is_reported_when_unavailable(tmp_path):
    from forge.bench.baselines import wasm_variant

    v = wasm_variant(None, tmp_path, tmp_path, None)
    assert not v.available and v.reason


# --- end to end -------------------------------------------------------------------------------------------
def _check_figure(fig: dict) -> None:
    assert fig["n"] >= 1 and len(fig["samples"]) == fig["n"]
    assert 0 < fig["min"] <= fig["median"] <= fig["max"]


@pytest.mark.sdk
@pytest.mark.docker
def test_bench_end_to_end_forge_and_floor(sdk, docker_client, tmp_path):
    """hello, N=2, forge + the C floor, processes and containers: every file, sane values, ratios = medians."""
    from forge.bench.run import BenchOptions, run_bench

    if not shutil.which("wrk"):
        pytest.fail("wrk is not installed (apt-get install wrk; scripts/bootstrap.sh --test)", pytrace=False)
    out = tmp_path / "bench"
    doc = run_bench(BenchOptions(src=HELLO, runs=2, out_dir=out, variants=("forge", "floor"), wrk_seconds=1,
                                 docker_client=docker_client, cold_build=False))

    for name in ("results.json", "results.md", "results.png", "results.svg"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in (out / "results.svg").read_bytes()[:2000]
    assert json.loads((out / "results.json").read_text()) == doc

    assert doc["settings"]["runs"] == 2
    assert doc["machine"]["kernel"] and doc["machine"]["cpu"] is not None
    assert set(doc["variants"]) == {"forge", "floor"}
    for name, v in doc["variants"].items():
        assert v["available"] and not v["errors"], (name, v.get("errors"))
        figs = v["figures"]
        for key in ("image_size_compressed", "image_size_uncompressed"):
            assert figs[key]["median"] > 0
        assert figs["image_size_uncompressed"]["median"] >= figs["image_size_compressed"]["median"]
        for key in ("process_cold_start_ms", "container_cold_start_ms", "idle_rss_kb", "idle_private_kb",
                    "container_idle_rss_kb", "peak_rss_kb", "throughput_rps"):
            assert key in figs, (name, key)
            assert figs[key]["n"] == 2, (name, key)
            _check_figure(figs[key])
        assert figs["peak_rss_kb"]["median"] >= figs["idle_rss_kb"]["min"]
        assert figs["idle_private_kb"]["max"] <= figs["idle_rss_kb"]["max"]
        if "build_seconds" in figs:
            assert figs["build_seconds"]["median"] > 0

    # ratios: baseline median / forge median, within rounding, for every figure both have
    forge, floor = doc["variants"]["forge"]["figures"], doc["variants"]["floor"]["figures"]
    ratios = doc["ratios"]["floor"]
    assert set(ratios) >= {"image_size_compressed", "process_cold_start_ms", "container_cold_start_ms",
                           "throughput_rps"}
    for key, r in ratios.items():
        assert r["ratio"] == pytest.approx(floor[key]["median"] / forge[key]["median"], rel=1e-3, abs=1e-3), key
        assert isinstance(r["meaningful"], bool)
        assert r["meaningful"] or r["reason"]

    # what `forge deploy` reads: cold-start medians per variant
    for name, figs in (("forge", forge), ("floor", floor)):
        assert doc["cold_start"][name] == {"process_ms": figs["process_cold_start_ms"]["median"],
                                           "container_ms": figs["container_cold_start_ms"]["median"]}

    md = (out / "results.md").read_text()
    assert "| **forge** |" in md and "| **floor** |" in md and "Ratios" in md
    assert "Cold-start budget" in md
    phases = {p["phase"] for p in doc["budget"]["phases"]}
    assert {"interpreter init", "imports", "app init"} <= phases

    # the bench's containers are gone
    assert not docker_client.containers.list(all=True, filters={"label": "forge.bench=1"})


@pytest.mark.sdk
def test_cli_budget_only(sdk, tmp_path):
    """`forge bench --budget --json`: the forge binary's cold start broken down (no Docker needed)."""
    proc = subprocess.run([sys.executable, "-m", "forge", "bench", str(HELLO), "--budget", "--runs", "2",
                           "--no-cold-build", "-o", str(tmp_path), "--json"], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    b = json.loads(proc.stdout)
    assert b["total_ms"] > 0 and b["phases"][0]["phase"] == "interpreter init"
    assert (tmp_path / "budget.md").read_text().startswith("## Cold-start budget")
