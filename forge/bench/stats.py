"""Summaries of repeated measurements, and when a ratio between two of them means something.

Every timed figure is measured N times; it is reported as median, min and max (never the mean: one
slow run on a shared machine would move it), and the quartiles are kept for the spread rule. A ratio
baseline / forge is computed from the medians, and it is *shown* only if both of these hold (the
spread rule, docs/bench.md):

  1. neither variant is too noisy: the middle half of its runs (the interquartile range, p25..p75)
     spans at most NOISE_LIMIT of its median;
  2. the two are apart: their interquartile ranges overlap by no more than OVERLAP_LIMIT of the
     narrower one (a range of zero width counts as overlapping fully when it lies in the other).

The quartiles, not min and max, because one run disturbed by a neighbour's compile on a shared machine
should not void a 40x difference, while two variants whose typical runs interleave have no
meaningful ratio whatever their medians say. (With 2 or 3 runs the quartiles are close to min/max.)
When the rule fails the ratio is still stored (so it can be checked against the medians) but flagged,
and the report prints the reason instead of the number. A figure measured once (image size, build
time) always compares.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

NOISE_LIMIT = 0.5
OVERLAP_LIMIT = 0.5
RATIO_SIGNIFICANT = 4


def summarize(samples: Sequence[float], digits: int = 3) -> dict:
    """{"median", "min", "max", "p25", "p75", "n", "samples"} of the samples (which must not be empty)."""
    xs = [float(x) for x in samples]
    if not xs:
        raise ValueError("no samples")
    p25, _, p75 = statistics.quantiles(xs, n=4, method="inclusive") if len(xs) > 1 else (xs[0],) * 3
    return {"median": round(statistics.median(xs), digits), "min": round(min(xs), digits),
            "max": round(max(xs), digits), "p25": round(p25, digits), "p75": round(p75, digits),
            "n": len(xs), "samples": [round(x, digits) for x in xs]}


def single(value: float) -> dict:
    """A figure measured once (sizes, build time), in the same shape as summarize()."""
    return {"median": value, "min": value, "max": value, "p25": value, "p75": value, "n": 1, "samples": [value]}


def noise(s: dict) -> float:
    """(p75 - p25) / median: how wide the middle half of the runs is, relative to the median."""
    width = s["p75"] - s["p25"]
    if width == 0:
        return 0.0
    return float("inf") if s["median"] <= 0 else width / s["median"]


def overlap_fraction(a: dict, b: dict) -> float:
    """How much of the narrower of the two interquartile ranges the other one covers, 0..1."""
    lo, hi = max(a["p25"], b["p25"]), min(a["p75"], b["p75"])
    if hi < lo:
        return 0.0
    narrow = min(a["p75"] - a["p25"], b["p75"] - b["p25"])
    if narrow <= 0:
        return 1.0  # a single point inside the other range
    return min(1.0, (hi - lo) / narrow)


def compare(baseline: dict, forge: dict) -> dict:
    """The ratio baseline_median / forge_median and whether it means anything (the spread rule).

    Returns {"ratio": float | None, "meaningful": bool, "reason": str | None}.
    """
    if forge["median"] == 0:
        return {"ratio": None, "meaningful": False, "reason": "forge's median is 0"}
    ratio = float(f"{baseline['median'] / forge['median']:.{RATIO_SIGNIFICANT}g}")
    if baseline["n"] == 1 and forge["n"] == 1:
        return {"ratio": ratio, "meaningful": True, "reason": None}
    for who, s in (("forge", forge), ("baseline", baseline)):
        if noise(s) > NOISE_LIMIT:
            return {"ratio": ratio, "meaningful": False,
                    "reason": f"spread too wide ({who}'s middle half spans {noise(s):.0%} of its median "
                              f"> {NOISE_LIMIT:.0%})"}
    ov = overlap_fraction(baseline, forge)
    if ov > OVERLAP_LIMIT:
        return {"ratio": ratio, "meaningful": False,
                "reason": f"ranges overlap ({ov:.0%} of the narrower middle half > {OVERLAP_LIMIT:.0%}): "
                          "no clear difference"}
    return {"ratio": ratio, "meaningful": True, "reason": None}
