"""An image and its parts are immutable values, as in go-containerregistry: builders return them,
publishers (forge.publish) take them. Blobs are held in memory: forge images are a few MB."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Blob:
    media_type: str
    data: bytes  # exactly the bytes stored in a layout and pushed to a registry

    @property
    def digest(self) -> str:
        return sha256_digest(self.data)

    @property
    def size(self) -> int:
        return len(self.data)

    def descriptor(self) -> dict:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@dataclass(frozen=True)
class Layer(Blob):
    diff_id: str = ""            # sha256 of the uncompressed tar (what the config's rootfs lists)
    uncompressed_size: int = 0


@dataclass(frozen=True)
class Image:
    config: Blob
    layers: tuple[Layer, ...]
    manifest: Blob

    @property
    def digest(self) -> str:
        return self.manifest.digest

    @property
    def compressed_size(self) -> int:
        """Bytes a registry stores for this image: manifest, config and compressed layers."""
        return self.manifest.size + self.config.size + sum(layer.size for layer in self.layers)

    @property
    def uncompressed_size(self) -> int:
        return sum(layer.uncompressed_size for layer in self.layers)

    def blobs(self) -> tuple[Blob, ...]:
        return (*self.layers, self.config, self.manifest)
