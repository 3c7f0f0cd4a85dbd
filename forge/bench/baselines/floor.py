"""floor: images/floor/floor.c (forge.image.floor.build_floor), alone in a FROM scratch image."""

from __future__ import annotations

from pathlib import Path

from forge.bench.baselines.common import (
    Key,
    _cached_build,
    scratch_sizes,
    scratch_variant,
)
from forge.bench.model import Variant


def build_floor_variant(client, rebuild: bool = False) -> Variant:
    from forge.image.floor import FLOOR_CFLAGS, build_floor, floor_source

    key = Key("floor", "labelled", *FLOOR_CFLAGS).add_file(floor_source()).hex()

    def build(stage: Path) -> dict:
        build_floor(stage / "app")
        c, u = scratch_sizes(stage / "app", "floor")
        return {"size_compressed": c, "size_uncompressed": u}

    d, meta, cached = _cached_build("floor", key, build, rebuild)
    tag = f"forge-bench/floor:{key[:12]}"
    return scratch_variant("floor", d, meta, cached, tag, client, "the floor binary run on the host")
