"""Build a forge image, daemonless and reproducibly: an ImageSpec in, an Image value out.

Layers, bottom to top:
  1. base      the rootfs from images/ (forge.image.rootfs): identical bytes in every forge image with
               the same compression, so a registry or host stores it once;
  2. zoneinfo  /usr/share/zoneinfo, only with include_zoneinfo (shared the same way);
  3. app       spec.app_dir copied to /app/, mtimes = spec.epoch.
"""

from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path, PurePosixPath

from forge import errors
from forge.config import source_date_epoch
from forge.image.layer import COMPRESSIONS, Entry, make_layer
from forge.image.model import OCI_CONFIG, OCI_MANIFEST, Blob, Image, Layer
from forge.image.rootfs import (CA_BUNDLE, SHARED_LAYER_EPOCH, base_entries, base_lock, tzdata_version,
                                zoneinfo_entries)

APP_DIR = "/app"
DEFAULT_PORT = 8080
DEFAULT_USER = "65532:65532"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_USER = re.compile(r"^[A-Za-z0-9_.-]+(:[A-Za-z0-9_.-]+)?$")


def epoch_from_env(default: int = 0) -> int:
    """SOURCE_DATE_EPOCH, else `default` (forge.config's one rule)."""
    return source_date_epoch({"source_date_epoch": default})


@dataclass(frozen=True)
class ImageSpec:
    app_dir: Path                               # copied to /app/ in the image
    entrypoint: tuple[str, ...] = ("/app/app",)
    env: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)   # org.opencontainers.image.* and others
    compression: str = "gzip"                   # "gzip" | "zstd"
    epoch: int = 0                              # SOURCE_DATE_EPOCH: mtimes of the app layer, config "created"
    include_zoneinfo: bool = False
    user: str = DEFAULT_USER
    port: int = DEFAULT_PORT

    def __post_init__(self) -> None:
        object.__setattr__(self, "app_dir", Path(self.app_dir))
        object.__setattr__(self, "entrypoint", tuple(self.entrypoint))
        object.__setattr__(self, "env", dict(self.env))
        object.__setattr__(self, "labels", dict(self.labels))
        if not self.entrypoint or not all(isinstance(a, str) and a for a in self.entrypoint):
            raise errors.ConfigError(f"the image entrypoint must be a non-empty list of strings, not {self.entrypoint!r}")
        if not self.entrypoint[0].startswith("/"):
            raise errors.ConfigError(
                f"the image entrypoint {self.entrypoint[0]!r} must be an absolute path: a FROM scratch image "
                "has no shell and no PATH to look a program up in (e.g. /app/app)")
        if self.compression not in COMPRESSIONS:
            raise errors.ConfigError(f"unknown layer compression {self.compression!r}: use one of {', '.join(COMPRESSIONS)}")
        if isinstance(self.epoch, bool) or not isinstance(self.epoch, int) or self.epoch < 0:
            raise errors.ConfigError(f"the image epoch (SOURCE_DATE_EPOCH) must be a whole number >= 0, not {self.epoch!r}")
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 1 <= self.port <= 65535:
            raise errors.ConfigError(f"the image port must be between 1 and 65535, not {self.port!r}")
        if not _USER.match(self.user):
            raise errors.ConfigError(f"the image user must be 'uid[:gid]' or a name, not {self.user!r}")
        for k, v in self.env.items():
            if not isinstance(k, str) or not _ENV_NAME.match(k) or not isinstance(v, str):
                raise errors.ConfigError(f"image environment entries must be NAME=string, not {k!r}={v!r}")
        if "PORT" in self.env and self.env["PORT"] != str(self.port):
            raise errors.ConfigError(
                f"env sets PORT={self.env['PORT']} but the image port is {self.port}: set the port instead "
                "(forge sets PORT from it)")
        for k, v in self.labels.items():
            if not isinstance(k, str) or not k or not isinstance(v, str):
                raise errors.ConfigError(f"image labels must be string: string, not {k!r}: {v!r}")


def _created(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def canonical_json(obj) -> bytes:
    """The one serialisation forge uses for configs, manifests and indexes: sorted keys, no spaces."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def app_entries(app_dir: Path, entrypoint: tuple[str, ...] = ()) -> list[Entry]:
    """spec.app_dir as entries under app/: root-owned, dirs and executables 0755, other files 0644.
    The entrypoint, when it lies in /app, is made 0755 whatever its mode on disk."""
    app_dir = Path(app_dir)
    if not app_dir.is_dir():
        raise errors.ConfigError(f"the image app directory {app_dir} does not exist or is not a directory")
    prefix = APP_DIR.lstrip("/")
    exe = entrypoint[0].lstrip("/") if entrypoint and entrypoint[0].startswith(APP_DIR + "/") else None
    entries = [Entry(prefix, "dir", 0o755)]
    for dirpath, dirnames, filenames in os.walk(app_dir):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            src = Path(dirpath) / name
            rel = f"{prefix}/{src.relative_to(app_dir).as_posix()}"
            st = os.lstat(src)
            if stat.S_ISLNK(st.st_mode):
                entries.append(Entry(rel, "symlink", 0o777, linkname=os.readlink(src)))
                if name in dirnames:
                    dirnames.remove(name)   # os.walk does not descend into symlinked dirs anyway
            elif stat.S_ISDIR(st.st_mode):
                entries.append(Entry(rel, "dir", 0o755))
            elif stat.S_ISREG(st.st_mode):
                mode = 0o755 if (st.st_mode & 0o111 or rel == exe) else 0o644
                entries.append(Entry(rel, "file", mode, src.read_bytes()))
            else:
                raise errors.ConfigError(
                    f"{src} is neither a file, a directory nor a symlink (a socket, FIFO or device); "
                    "remove it from the app directory")
    if exe is not None and not any(e.path == exe and e.kind in ("file", "symlink") for e in entries):
        raise errors.ConfigError(
            f"the entrypoint {entrypoint[0]} is not in the app directory: {app_dir} has no "
            f"{PurePosixPath(exe).relative_to(prefix)}")
    return entries


@lru_cache(maxsize=4)
def base_layer(compression: str) -> Layer:
    """Layer 1, the same bytes for every forge image with this compression."""
    return make_layer(base_entries(), SHARED_LAYER_EPOCH, compression)


@lru_cache(maxsize=4)
def zoneinfo_layer(compression: str) -> Layer:
    return make_layer(zoneinfo_entries(), SHARED_LAYER_EPOCH, compression)


def image_config(spec: ImageSpec, layers: list[Layer], history: list[str]) -> dict:
    env = [f"SSL_CERT_FILE={CA_BUNDLE}", f"PORT={spec.port}"]
    env += [f"{k}={v}" for k, v in sorted(spec.env.items()) if k != "PORT"]
    created = _created(spec.epoch)
    cfg: dict = {
        "User": spec.user,
        "Env": env,
        "Entrypoint": list(spec.entrypoint),
        "ExposedPorts": {f"{spec.port}/tcp": {}},
        "WorkingDir": APP_DIR,
    }
    if spec.labels:
        cfg["Labels"] = dict(sorted(spec.labels.items()))
    return {
        "created": created,
        "architecture": "amd64",
        "os": "linux",
        "config": cfg,
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "history": [{"created": created, "created_by": h} for h in history],
    }


def assemble(config: dict, layers: list[Layer], annotations: dict[str, str] | None = None) -> Image:
    """An Image from a config dict and its layers (the manifest is written here)."""
    config_blob = Blob(OCI_CONFIG, canonical_json(config))
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config_blob.descriptor(),
        "layers": [layer.descriptor() for layer in layers],
    }
    if annotations:
        manifest["annotations"] = dict(annotations)
    return Image(config=config_blob, layers=tuple(layers), manifest=Blob(OCI_MANIFEST, canonical_json(manifest)))


def build_image(spec: ImageSpec) -> Image:
    """The image for `spec`. Same spec and same app_dir content -> the same manifest digest, byte for byte."""
    app = app_entries(spec.app_dir, spec.entrypoint)
    pin = base_lock()["ca-certificates"]
    layers = [base_layer(spec.compression)]
    history = [f"forge base rootfs: passwd, group, nonroot 65532, /tmp 1777, CA bundle certifi {pin['version']}"]
    if spec.include_zoneinfo:
        layers.append(zoneinfo_layer(spec.compression))
        history.append(f"forge zoneinfo: /usr/share/zoneinfo from tzdata {tzdata_version()}")
    layers.append(make_layer(app, spec.epoch, spec.compression))
    history.append(f"forge app: COPY app/ {APP_DIR}/")
    return assemble(image_config(spec, layers, history), layers)

