"""Summaries of repeated measurements, and when a ratio between two of them means something.

Every timed figure is measured N times; it is reported as median, min and max (never the mean: one
slow run on a shared machine would move it). A ratio baseline / forge is computed from the medians,
and it is *shown* only if both of these hold (the spread rule, docs/bench.md):

  1. neither variant is too noisy: max / min <= SPREAD_LIMIT for each of the two;
  2. their ranges are apart: the min-max ranges of the two variants overlap by no more than
     OVERLAP_LIMIT of the narrower range (a single value counts as overlapping fully when it lies in
     the other range).

Otherwise the ratio is still stored (so it can be checked against the medians) but flagged, and the
report prints the reason instead of the number. A single measurement (image size, build time) is
always comparable.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

SPREAD_LIMIT = 2.0
OVERLAP_LIMIT = 0.5
RATIO_DIGITS = 3


def summarize(samples: Sequence[float], digits: int = 3) -> dict:
    """{"median", "min", "max", "n", "samples"} of the samples (which must not be empty)."""
    xs = [float(x) for x in samples]
    if not xs:
        raise ValueError("no samples")
    return {"median": round(statistics.median(xs), digits), "min": round(min(xs), digits),
            "max": round(max(xs), digits), "n": len(xs), "samples": [round(x, digits) for x in xs]}


def single(value: float) -> dict:
    """A figure measured once (sizes, build time), in the same shape as summarize()."""
    return {"median": value, "min": value, "max": value, "n": 1, "samples": [value]}


def spread(s: dict) -> float:
    """max / min (1.0 for a single value; infinite when min is 0 and max is not)."""
    lo, hi = s["min"], s["max"]
    if hi == lo:
        return 1.0
    return float("inf") if lo <= 0 else hi / lo


def overlap_fraction(a: dict, b: dict) -> float:
    """How much of the narrower of the two [min, max] ranges the other one covers, 0..1."""
    lo, hi = max(a["min"], b["min"]), min(a["max"], b["max"])
    if hi < lo:
        return 0.0
    narrow = min(a["max"] - a["min"], b["max"] - b["min"])
    if narrow <= 0:
        return 1.0  # a single point inside the other range
    return min(1.0, (hi - lo) / narrow)


def compare(baseline: dict, forge: dict) -> dict:
    """The ratio baseline_median / forge_median and whether it means anything (the spread rule).

    Returns {"ratio": float | None, "meaningful": bool, "reason": str | None}.
    """
    if forge["median"] == 0:
        return {"ratio": None, "meaningful": False, "reason": "forge's median is 0"}
    ratio = round(baseline["median"] / forge["median"], RATIO_DIGITS)
    if baseline["n"] == 1 and forge["n"] == 1:
        return {"ratio": ratio, "meaningful": True, "reason": None}
    for who, s in (("forge", forge), ("baseline", baseline)):
        if spread(s) > SPREAD_LIMIT:
            return {"ratio": ratio, "meaningful": False,
                    "reason": f"spread too wide ({who} max/min {spread(s):.1f} > {SPREAD_LIMIT:g})"}
    ov = overlap_fraction(baseline, forge)
    if ov > OVERLAP_LIMIT:
        return {"ratio": ratio, "meaningful": False,
                "reason": f"ranges overlap ({ov:.0%} > {OVERLAP_LIMIT:.0%}): no clear difference"}
    return {"ratio": ratio, "meaningful": True, "reason": None}
