"""Reading a forge image back: what its config says (platform, port, size) and the ImageSpec it was
built from, so the Dockerfile.scratch route (forge.image.context) can lay out the same image again.

Used by `forge deploy cloudflare` (size and port checks; `--dockerfile` from a built or pulled image).
"""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

from forge.errors import DeployConfigError, ImageUnsuitable
from forge.image.build import DEFAULT_PORT, DEFAULT_USER, ImageSpec
from forge.image.context import write_build_context
from forge.image.layer import decompress, uncompressed_length
from forge.image.model import Image


@dataclass(frozen=True)
class ConfigFacts:
    platform: str   # os/architecture[/variant]
    port: int       # PORT from the env, else the first exposed port, else DEFAULT_PORT
    size: int       # uncompressed bytes of the layers (what `docker image inspect` calls Size)


def config_facts(image: Image, default_port: int = DEFAULT_PORT) -> ConfigFacts:
    try:
        config = json.loads(image.config.data)
    except ValueError:
        raise ImageUnsuitable("the image config is not JSON; this is not an image forge can deploy.") from None
    platform = f"{config.get('os', '?')}/{config.get('architecture', '?')}"
    if config.get("variant"):
        platform += f"/{config['variant']}"
    port = default_port
    cfg = config.get("config") or {}
    for env in cfg.get("Env") or []:
        if env.startswith("PORT=") and env[5:].isdigit():
            port = int(env[5:])
    exposed = [p.split("/")[0] for p in (cfg.get("ExposedPorts") or {}) if p.split("/")[0].isdigit()]
    if exposed and str(port) not in exposed:
        port = int(exposed[0])
    size = sum(layer.uncompressed_size or uncompressed_length(layer.media_type, layer.data) for layer in image.layers)
    return ConfigFacts(platform=platform, port=port, size=size)


def spec_from_image(image: Image, app_dir: Path, default_port: int = DEFAULT_PORT) -> ImageSpec:
    """The ImageSpec a forge image was built from, as far as the Dockerfile route needs it: the app
    layer (the last one, everything under app/) is unpacked into app_dir; user, port, entrypoint, env
    and labels come from the config."""
    config = json.loads(image.config.data)
    cfg = config.get("config") or {}
    history = " ".join(h.get("created_by", "") for h in config.get("history") or [] if isinstance(h, dict))
    if not image.layers or "forge app" not in history:
        raise DeployConfigError("--dockerfile rebuilds images that forge built (their history names the forge "
                                "layers); this image was built some other way. Push it and use --image REF.")
    with tarfile.open(fileobj=io.BytesIO(decompress(image.layers[-1].data))) as tar:
        members = [m for m in tar.getmembers() if m.name.lstrip("./") not in ("", "app")]
        if not all(m.name.lstrip("./").startswith("app/") for m in members):
            raise DeployConfigError("the image's last layer holds files outside /app, so it is not a forge app "
                                    "layer; use --image REF.")
        for m in members:
            m.name = m.name.lstrip("./")[len("app/"):]
        tar.extractall(app_dir, members=members, filter="data")
    env = {}
    port = default_port
    for item in cfg.get("Env") or []:
        k, _, v = item.partition("=")
        if k == "PORT" and v.isdigit():
            port = int(v)
        elif k != "SSL_CERT_FILE":
            env[k] = v
    return ImageSpec(app_dir=app_dir, entrypoint=tuple(cfg.get("Entrypoint") or ("/app/app",)), env=env,
                     labels=dict(cfg.get("Labels") or {}), include_zoneinfo="forge zoneinfo" in history,
                     user=cfg.get("User") or DEFAULT_USER, port=port)


def context_from_image(image: Image, workdir: Path, default_port: int = DEFAULT_PORT) -> Path:
    """Unpack a forge image's app into workdir/app and write the Dockerfile.scratch build context that
    gives the same image into workdir/context (returned)."""
    (workdir / "app").mkdir()
    spec = spec_from_image(image, workdir / "app", default_port)
    return write_build_context(spec, workdir / "context")
