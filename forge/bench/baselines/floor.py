"""floor: images/floor/floor.c (forge.image.floor.build_floor), alone in a FROM scratch image."""

from __future__ import annotations

from pathlib import Path

from forge.bench.baselines.common import (
    Key,
    _cached_build,
    _variant_from,
    drop_other_tags,
    has_image,
    load_scratch_image,
    scratch_sizes,
)
from forge.bench.measure import ProcessSpec
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
    if client is not None and (not has_image(client, tag) or not cached):
        load_scratch_image(client, d / "app", tag, "floor")
        drop_other_tags(client, tag)
    v = _variant_from("floor", d, meta, cached, ProcessSpec((str(d / "app" / "app"),)),
                      tag if client else None,
                      {"process": "the floor binary run on the host", "image": "FROM scratch + forge base layer"})
    v.reload = (lambda: load_scratch_image(client, d / "app", tag, "floor")) if client else None
    return v
