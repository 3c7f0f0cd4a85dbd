"""Fetch an image from a registry as an Image value (the inverse of forge.publish.push)."""

from __future__ import annotations

import json

from forge.errors import ImageUnsuitable, RegistryError
from forge.image.layer import uncompressed_length
from forge.image.model import OCI_INDEX, OCI_MANIFEST, Blob, Image, Layer, sha256_digest
from forge.publish.client import RegistryClient
from forge.publish.reference import Reference, parse_reference

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
_MANIFESTS = (OCI_MANIFEST, DOCKER_MANIFEST)
_INDEXES = (OCI_INDEX, DOCKER_MANIFEST_LIST)


def pull_image(ref: str | Reference, *, insecure: bool = False, platform: str = "linux/amd64",
               **client_options) -> Image:
    """Fetch an image (manifest, config and layers) from a registry as an Image value. From an index,
    the `platform` entry is taken; an index without one is refused with the platforms it has."""
    ref = parse_reference(ref) if isinstance(ref, str) else ref
    client = RegistryClient(ref, insecure=insecure, actions="pull", **client_options)
    client.ping()
    media_type, data = client.get_manifest(ref.digest or ref.tag or "latest", _MANIFESTS + _INDEXES)
    doc = _json(data, f"the manifest of {ref}")
    media_type = media_type or doc.get("mediaType", "")
    if media_type in _INDEXES or "manifests" in doc:
        want_os, want_arch = platform.split("/", 1)
        found = []
        for entry in doc.get("manifests") or []:
            plat = entry.get("platform") or {}
            found.append(f"{plat.get('os', '?')}/{plat.get('architecture', '?')}")
            if plat.get("os") == want_os and plat.get("architecture") == want_arch:
                media_type, data = client.get_manifest(entry["digest"], _MANIFESTS)
                doc = _json(data, f"the {platform} manifest of {ref}")
                media_type = media_type or doc.get("mediaType", "")
                break
        else:
            raise ImageUnsuitable(f"{ref} is an index of platforms {', '.join(found) or 'none'}; it has no "
                                  f"{platform} image. Build for {platform} (forge build does) and push that.")
    try:
        cfg_desc, layer_descs = doc["config"], doc["layers"]
        config = Blob(cfg_desc["mediaType"], _verified(client.get_blob(cfg_desc["digest"]), cfg_desc["digest"]))
        diff_ids = _json(config.data, f"the config of {ref}").get("rootfs", {}).get("diff_ids", [])
        layers = []
        for i, desc in enumerate(layer_descs):
            blob = _verified(client.get_blob(desc["digest"]), desc["digest"])
            layers.append(Layer(desc["mediaType"], blob, diff_id=diff_ids[i] if i < len(diff_ids) else "",
                                uncompressed_size=uncompressed_length(desc["mediaType"], blob)))
    except (KeyError, TypeError) as exc:
        raise RegistryError(f"the manifest of {ref} is not an image manifest (missing {exc}).") from None
    return Image(config=config, layers=tuple(layers), manifest=Blob(media_type or OCI_MANIFEST, data))


def _json(data: bytes, what: str) -> dict:
    try:
        doc = json.loads(data)
    except ValueError:
        raise RegistryError(f"{what} is not JSON.") from None
    if not isinstance(doc, dict):
        raise RegistryError(f"{what} is not a JSON object.")
    return doc


def _verified(data: bytes, digest: str) -> bytes:
    if sha256_digest(data) != digest:
        raise RegistryError(f"the registry sent a blob that does not match its digest {digest}.")
    return data
