"""The bench's outputs: results.json (everything), results.md (tables), results.png/.svg (charts)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from forge.cache import atomic_write_bytes

MAIN_COLUMNS = ("image_size_compressed", "image_size_uncompressed", "process_cold_start_ms",
                "container_cold_start_ms", "idle_rss_kb", "idle_private_kb", "container_idle_rss_kb", "peak_rss_kb",
                "throughput_rps", "build_seconds")
SHORT = {
    "image_size_compressed": "image gz", "image_size_uncompressed": "image raw",
    "process_cold_start_ms": "process cold start", "container_cold_start_ms": "container cold start",
    "idle_rss_kb": "idle RSS", "idle_private_kb": "idle private", "container_idle_rss_kb": "idle RSS (container)",
    "peak_rss_kb": "peak RSS (load)", "throughput_rps": "req/s", "build_seconds": "build",
}


def fmt_value(key: str, x: float) -> str:
    if key.startswith("image_size"):
        return f"{x / 2**20:.2f} MiB" if x >= 2**20 else f"{x / 1024:.0f} KiB"
    if key.endswith("_kb"):
        return f"{x / 1024:.1f} MiB" if x >= 1024 else f"{x:.0f} KiB"
    if key.endswith("_ms"):
        return f"{x:.1f} ms" if x < 1000 else f"{x / 1000:.2f} s"
    if key == "throughput_rps":
        return f"{x:,.0f}"
    if key == "build_seconds":
        return f"{x:.1f} s"
    return f"{x:g}"


def fmt_figure(key: str, fig: dict | None) -> str:
    if not fig:
        return "–"
    if fig["n"] == 1:
        return fmt_value(key, fig["median"])
    lo, hi = fmt_value(key, fig["min"]), fmt_value(key, fig["max"])
    if lo.partition(" ")[2] == hi.partition(" ")[2]:
        lo = lo.partition(" ")[0]   # one unit for the range
    return f"{fmt_value(key, fig['median'])} ({lo}–{hi})"


def fmt_ratio(r: dict | None) -> str:
    if not r or r.get("ratio") is None:
        return "–" if not r else f"n/a ({r.get('reason')})"
    if not r["meaningful"]:
        return f"n/a: {r['reason']}"
    x = r["ratio"]
    return f"{x:.2f}×" if x >= 0.1 else f"{x:.2g}×"


def _row(cells) -> str:
    return "| " + " | ".join(cells) + " |"


def markdown(doc: dict) -> str:
    m, wl, st = doc["machine"], doc["workload"], doc["settings"]
    variants = doc["variants"]
    cols = [k for k in MAIN_COLUMNS if any(k in v.get("figures", {}) for v in variants.values())]
    lines = [f"# forge bench: {wl['name']}", "",
             f"- date: {doc['date']}" + (f", `{doc['command']}`" if doc.get("command") else ""),
             f"- machine: {m.get('cpu')} ({m.get('cpus')} CPUs), kernel {m.get('kernel')}, {m.get('os')}"
             + (f", Docker {m['docker']}" if m.get("docker") else ""),
             f"- load average at start / end: {' '.join(f'{x:.2f}' for x in m.get('loadavg', []))} / "
             f"{' '.join(f'{x:.2f}' for x in m.get('loadavg_end', []))}",
             f"- workload: `{wl['src']}` (entry `{wl['entry']}`), forge image {wl['forge_digest']}",
             f"- {st['runs']} runs per variant after 1 warm-up run, {st['order']}; medians, (min–max)",
             ]
    if st.get("wrk"):
        w = st["wrk"]
        lines.append(f"- throughput: `wrk -t{w['threads']} -c{w['connections']} -d{w['seconds']:g}s` on loopback, "
                     "GET /, once per run; peak RSS = VmHWM after it")
    lines += [f"- process cold start: {st['process_cold_start']}; container cold start: {st['container_cold_start']}",
              "", "## Figures", "", _row(["variant"] + [SHORT[c] for c in cols]),
              _row(["---"] + ["---:"] * len(cols))]
    for name, v in variants.items():
        if not v["available"]:
            continue
        lines.append(_row([f"**{name}**"] + [fmt_figure(c, v["figures"].get(c)) for c in cols]))
    ratio_cols = [c for c in cols]
    if doc["ratios"]:
        lines += ["", "## Ratios: baseline / forge (of the medians)", "",
                  "Above 1 means the baseline is larger or slower, except req/s, where above 1 means the baseline "
                  "serves more. `n/a` when the spread rule says the ratio means nothing (see below).", "",
                  _row(["baseline"] + [SHORT[c] for c in ratio_cols]), _row(["---"] + ["---:"] * len(ratio_cols))]
        for name, rs in doc["ratios"].items():
            lines.append(_row([f"**{name}**"] + [fmt_ratio(rs.get(c)) for c in ratio_cols]))
    lines += ["", f"Spread rule: a ratio is shown only if, for both variants, the middle half of the runs "
              f"(p25–p75) spans at most {st['noise_limit']:.0%} of the median, and the two middle halves overlap by "
              f"at most {st['overlap_limit']:.0%} of the narrower one.", ""]
    missing = [v for v in variants.values() if not v["available"]]
    lines += ["## Variants", ""]
    for name, v in variants.items():
        if not v["available"]:
            continue
        notes = "; ".join(f"{k}: {t}" for k, t in v.get("notes", {}).items())
        lines.append(f"- **{name}** ({v['label']}): {notes}"
                     + ("; build time recorded when the cached build was made" if v.get("build_cached")
                        and "build_seconds" in v["figures"] else ""))
    for v in missing:
        lines.append(f"- **{v['name']}** ({v['label']}): {v['reason']}")
    errs = [(n, e) for n, v in variants.items() for e in v.get("errors", [])]
    if errs:
        lines += ["", "## Failed runs", ""] + [f"- {n}: {e}" for n, e in errs]
    if doc.get("budget"):
        lines += ["", budget_markdown(doc["budget"])]
    return "\n".join(lines) + "\n"


def budget_markdown(b: dict) -> str:
    lines = [f"## Cold-start budget: forge binary ({b['workload']})", "",
             f"Phases measured with the SDK interpreter (Python {b['python']}, `-S`, like the binary), median of "
             f"{b['runs']} runs; the total is the forge binary's process cold start (median). Phases can be "
             "negative: they are differences of medians."
             , "", _row(["phase", "ms", "how"]), _row(["---", "---:", "---"])]
    for p in b["phases"]:
        lines.append(_row([p["phase"], f"{p['ms']:.2f}", p["how"]]))
    if b.get("total_ms") is not None:
        lines.append(_row(["**total (process cold start)**", f"**{b['total_ms']:.2f}**", ""]))
    if b.get("top_imports_ms"):
        lines += ["", "Slowest top-level imports (cumulative ms): " +
                  ", ".join(f"`{t['module']}` {t['ms']:.2f}" for t in b["top_imports_ms"][:6])]
    return "\n".join(lines)


CHART_FIGURES = ("image_size_compressed", "process_cold_start_ms", "container_cold_start_ms", "idle_rss_kb",
                 "peak_rss_kb", "throughput_rps", "build_seconds", "image_size_uncompressed")
SCALE = {"image_size_compressed": (2**20, "MiB"), "image_size_uncompressed": (2**20, "MiB"),
         "idle_rss_kb": (1024, "MiB"), "peak_rss_kb": (1024, "MiB")}


def require_chart_libraries() -> None:
    """Fail before a bench measures anything if the charts (written last) could not be drawn."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        from forge import errors

        raise errors.BenchDependencyMissing(
            "forge bench draws results.png and results.svg with matplotlib, which is not installed in this "
            "environment (it is an optional extra, not needed to build). Install it with "
            "pip install 'forge[bench]' (in a clone: pip install -c constraints.txt -e '.[bench]'), then run "
            "forge bench again; forge bench --budget needs no charts.")


def charts(doc: dict, out_dir: Path) -> None:
    """results.png and results.svg: one panel per figure, bars at the median, whiskers min–max."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matplotlib.rcParams["svg.hashsalt"] = "forge-bench"
    variants = {n: v for n, v in doc["variants"].items() if v["available"]}
    keys = [k for k in CHART_FIGURES if any(k in v["figures"] for v in variants.values())]
    ncols = 4
    nrows = max(1, -(-len(keys) // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.4 * nrows), squeeze=False)
    colors = {"forge": "#2a9d8f", "cpython": "#3b6fb6", "nuitka": "#e9a23b", "pyinstaller": "#b65c3b",
              "floor": "#777777", "wasm": "#8a5cb6"}
    for ax, key in zip(axes.flat, keys):
        meta = doc["figures"][key]
        div, unit = SCALE.get(key, (1, meta["unit"]))
        names = [n for n, v in variants.items() if key in v["figures"]]
        med = [variants[n]["figures"][key]["median"] / div for n in names]
        lo = [m - variants[n]["figures"][key]["min"] / div for n, m in zip(names, med)]
        hi = [variants[n]["figures"][key]["max"] / div - m for n, m in zip(names, med)]
        ax.bar(names, med, yerr=[lo, hi], capsize=3, color=[colors.get(n, "#999999") for n in names])
        ax.set_title(f"{meta['label']} ({unit})" + (" ↑" if meta["higher_is_better"] else " ↓"), fontsize=10)
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
        ax.tick_params(axis="y", labelsize=8)
        for i, m in enumerate(med):
            ax.annotate(f"{m:,.0f}" if m >= 1000 else f"{m:.3g}", (i, m), ha="center", va="bottom", fontsize=7)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.suptitle(f"forge bench: {doc['workload']['name']}  ({doc['date']}, {doc['machine'].get('cpu')}, "
                 f"{doc['settings']['runs']} runs, median and min–max)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out_dir / "results.png", dpi=110)
    fig.savefig(out_dir / "results.svg", metadata={"Date": None})
    plt.close(fig)


def write_all(doc: dict, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out_dir / "results.json", (json.dumps(doc, indent=2) + "\n").encode())
    atomic_write_bytes(out_dir / "results.md", markdown(doc).encode())
    charts(doc, out_dir)
    for name in ("results.json", "results.md"):
        os.chmod(out_dir / name, 0o644)   # mkstemp made them 0600: they are reports, for everyone
