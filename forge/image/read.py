"""Read an image back from disk, trusting nothing: every blob is checked against its descriptor.

load_image(path) takes
  - an OCI image layout directory (`oci-layout`, `index.json`, `blobs/sha256/...`), as
    forge.publish.OciLayoutPublisher writes it;
  - a tarball holding an OCI image layout (forge.publish.DockerArchivePublisher writes one, with
    docker's manifest.json beside it; `docker save` of Docker >= 25 writes the same shape);
  - a plain docker-archive tarball (manifest.json, <config>.json, <id>/layer.tar: `docker save` of
    older Dockers). Its layers are checked against the config's diff_ids and an OCI manifest is
    written for it, so its digest is forge's, not the one a registry showed for the original.
"""

from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path

from forge import errors
from forge.image.build import canonical_json
from forge.image.layer import (DOCKER_LAYER_GZIP, DOCKER_LAYER_TAR, DOCKER_LAYER_ZSTD, decompress,
                               media_type_compression)
from forge.image.model import (OCI_CONFIG, OCI_INDEX, OCI_LAYER_GZIP, OCI_LAYER_TAR, OCI_LAYER_ZSTD,
                               OCI_MANIFEST, Blob, Image, Layer, sha256_digest)

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
REF_NAME = "org.opencontainers.image.ref.name"
_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")
_INDEX_TYPES = (OCI_INDEX, DOCKER_MANIFEST_LIST)
_MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)


class _Store:
    """Files of a layout, from a directory or a tarball, by relative path."""

    def __init__(self, path: Path):
        self.path = path
        self._files: dict[str, bytes] | None = None
        if path.is_dir():
            return
        try:
            with tarfile.open(path, mode="r:*") as tf:
                files = {}
                for m in tf:
                    if m.isfile():
                        fh = tf.extractfile(m)
                        files[m.name.removeprefix("./")] = fh.read() if fh else b""
                self._files = files
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise errors.InvalidImage(
                f"{path} is neither an OCI image layout directory nor a readable tarball ({exc}); "
                "give the directory `forge build --oci-layout` wrote or the archive `--docker-archive` wrote") from exc

    def has(self, rel: str) -> bool:
        if self._files is not None:
            return rel in self._files
        return (self.path / rel).is_file()

    def read(self, rel: str, what: str) -> bytes:
        if self._files is not None:
            if rel in self._files:
                return self._files[rel]
        else:
            p = self.path / rel
            if p.is_file() and not p.is_symlink():
                return p.read_bytes()
        raise errors.InvalidImage(f"{self.path}: {what} ({rel}) is missing; the image is incomplete, build it again")

    def json(self, rel: str, what: str):
        try:
            return json.loads(self.read(rel, what))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise errors.InvalidImage(f"{self.path}: {what} ({rel}) is not valid JSON: {exc}") from exc


def _check_descriptor(path: Path, desc, what: str) -> None:
    if not isinstance(desc, dict) or not isinstance(desc.get("mediaType"), str) \
            or not isinstance(desc.get("size"), int) or not isinstance(desc.get("digest"), str):
        raise errors.InvalidImage(f"{path}: the descriptor of the {what} is malformed: {desc!r}")
    if not _DIGEST.match(desc["digest"]):
        raise errors.InvalidImage(
            f"{path}: the {what} has digest {desc['digest']!r}; forge reads sha256 digests only")


def _blob(store: _Store, desc: dict, what: str) -> bytes:
    """A blob's bytes from blobs/sha256/<hex>, verified against its descriptor's digest and size."""
    _check_descriptor(store.path, desc, what)
    algo, hexdigest = desc["digest"].split(":", 1)
    data = store.read(f"blobs/{algo}/{hexdigest}", what)
    actual = sha256_digest(data)
    if actual != desc["digest"]:
        raise errors.InvalidImage(
            f"{store.path}: the {what} blob blobs/{algo}/{hexdigest} is corrupt: its content hashes to "
            f"{actual}, not {desc['digest']} as its descriptor says. The file was changed or truncated "
            "after it was written; publish the image again.")
    if len(data) != desc["size"]:
        raise errors.InvalidImage(
            f"{store.path}: the {what} blob {desc['digest']} is {len(data)} bytes, but its descriptor "
            f"says {desc['size']}; publish the image again.")
    return data


def _layer(path: Path, media_type: str, data: bytes, diff_id: str, index: int) -> Layer:
    tar = decompress(data)
    actual = sha256_digest(tar)
    if actual != diff_id:
        raise errors.InvalidImage(
            f"{path}: layer {index} uncompresses to content with digest {actual}, but the image config "
            f"lists diff_id {diff_id}; the layer does not belong to this image, publish it again.")
    return Layer(media_type=media_type, data=data, diff_id=diff_id, uncompressed_size=len(tar))


def _diff_ids(path: Path, config: bytes, n_layers: int) -> list[str]:
    try:
        diff_ids = json.loads(config)["rootfs"]["diff_ids"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise errors.InvalidImage(f"{path}: the image config has no rootfs.diff_ids ({exc})") from exc
    if not isinstance(diff_ids, list) or len(diff_ids) != n_layers:
        raise errors.InvalidImage(
            f"{path}: the manifest lists {n_layers} layers but the config's rootfs.diff_ids has "
            f"{len(diff_ids) if isinstance(diff_ids, list) else 'no list of'} entries")
    return diff_ids


def _pick(path: Path, manifests: list, ref_name: str | None) -> dict:
    if not isinstance(manifests, list) or not manifests:
        raise errors.InvalidImage(f"{path}: index.json lists no manifests")
    if ref_name is not None:
        hits = [m for m in manifests if isinstance(m, dict) and (m.get("annotations") or {}).get(REF_NAME) == ref_name]
        if not hits:
            names = sorted({(m.get("annotations") or {}).get(REF_NAME, "") for m in manifests if isinstance(m, dict)} - {""})
            raise errors.InvalidImage(f"{path}: no image named {ref_name!r} in index.json (it has: {', '.join(names) or 'no names'})")
        return hits[0]
    if len(manifests) == 1:
        return manifests[0]
    amd64 = [m for m in manifests if isinstance(m, dict)
             and (m.get("platform") or {}).get("architecture") == "amd64"
             and (m.get("platform") or {}).get("os") == "linux"]
    if len(amd64) == 1:
        return amd64[0]
    raise errors.InvalidImage(f"{path}: index.json lists {len(manifests)} images; say which one by its ref name")


def _from_oci(store: _Store, ref_name: str | None) -> Image:
    path = store.path
    layout = store.json("oci-layout", "the oci-layout file")
    if not isinstance(layout, dict) or not isinstance(layout.get("imageLayoutVersion"), str):
        raise errors.InvalidImage(f"{path}: oci-layout has no imageLayoutVersion")
    index = store.json("index.json", "the image index")
    if not isinstance(index, dict) or index.get("schemaVersion") != 2:
        raise errors.InvalidImage(f"{path}: index.json is not an OCI image index (schemaVersion 2)")
    desc = _pick(path, index.get("manifests"), ref_name)
    for _ in range(4):  # nested indexes (one level is usual)
        _check_descriptor(path, desc, "image manifest")
        if desc["mediaType"] not in _INDEX_TYPES:
            break
        nested = json.loads(_blob(store, desc, "nested image index"))
        desc = _pick(path, nested.get("manifests"), None)
    if desc["mediaType"] not in _MANIFEST_TYPES:
        raise errors.InvalidImage(f"{path}: index.json points at a {desc['mediaType']!r}, not an image manifest")
    manifest_bytes = _blob(store, desc, "image manifest")
    try:
        manifest = json.loads(manifest_bytes)
        config_desc, layer_descs = manifest["config"], manifest["layers"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise errors.InvalidImage(f"{path}: the image manifest {desc['digest']} is malformed ({exc})") from exc
    if not isinstance(layer_descs, list):
        raise errors.InvalidImage(f"{path}: the image manifest's layers is not a list")
    config = Blob(config_desc.get("mediaType", OCI_CONFIG) if isinstance(config_desc, dict) else OCI_CONFIG,
                  _blob(store, config_desc, "image config"))
    diff_ids = _diff_ids(path, config.data, len(layer_descs))
    layers = []
    for i, (ld, diff_id) in enumerate(zip(layer_descs, diff_ids, strict=True)):
        data = _blob(store, ld, f"layer {i}")
        media_type_compression(ld["mediaType"])  # rejects unknown layer types
        layers.append(_layer(path, ld["mediaType"], data, diff_id, i))
    return Image(config=config, layers=tuple(layers), manifest=Blob(desc["mediaType"], manifest_bytes))


def _from_docker_archive(store: _Store, ref_name: str | None) -> Image:
    """A legacy docker-archive (manifest.json only): verified against the config, given an OCI manifest."""
    path = store.path
    entries = store.json("manifest.json", "docker's manifest.json")
    if not isinstance(entries, list) or not entries:
        raise errors.InvalidImage(f"{path}: manifest.json lists no images")
    if ref_name is not None:
        hits = [e for e in entries if ref_name in (e.get("RepoTags") or [])]
        if not hits:
            raise errors.InvalidImage(f"{path}: no image tagged {ref_name!r} in manifest.json")
        entry = hits[0]
    elif len(entries) == 1:
        entry = entries[0]
    else:
        raise errors.InvalidImage(f"{path}: the archive holds {len(entries)} images; say which one by its tag")
    try:
        config_path, layer_paths = entry["Config"], entry["Layers"]
    except (KeyError, TypeError) as exc:
        raise errors.InvalidImage(f"{path}: manifest.json entry is malformed ({exc})") from exc
    config_bytes = store.read(config_path, "the image config")
    named = re.search(r"([a-f0-9]{64})(\.json)?$", config_path)
    if named and sha256_digest(config_bytes) != "sha256:" + named.group(1):
        raise errors.InvalidImage(f"{path}: the image config {config_path} does not hash to the digest in its name; it is corrupt")
    diff_ids = _diff_ids(path, config_bytes, len(layer_paths))
    layers = []
    for i, (lp, diff_id) in enumerate(zip(layer_paths, diff_ids, strict=True)):
        data = store.read(lp, f"layer {i}")
        if lp.startswith("blobs/sha256/") and sha256_digest(data) != "sha256:" + lp.rsplit("/", 1)[1]:
            raise errors.InvalidImage(f"{path}: layer blob {lp} does not hash to the digest in its name; it is corrupt")
        kind = {b"\x1f\x8b": OCI_LAYER_GZIP}.get(data[:2]) or (OCI_LAYER_ZSTD if data[:4] == b"\x28\xb5\x2f\xfd" else OCI_LAYER_TAR)
        layers.append(_layer(path, kind, data, diff_id, i))
    config = Blob(OCI_CONFIG, config_bytes)
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config.descriptor(),
                "layers": [layer.descriptor() for layer in layers]}
    return Image(config=config, layers=tuple(layers), manifest=Blob(OCI_MANIFEST, canonical_json(manifest)))


def load_image(path: Path | str, ref_name: str | None = None) -> Image:
    """The image at `path` (OCI layout dir, or a tarball with an OCI layout or docker's manifest.json).

    Every blob is checked against its descriptor (sha256 and size) and every layer against the
    config's diff_id; raises errors.InvalidImage naming what is wrong. With several images in the
    index, `ref_name` picks one (org.opencontainers.image.ref.name, or a RepoTag in manifest.json).
    """
    path = Path(path)
    if not path.exists():
        raise errors.InvalidImage(f"{path} does not exist; publish an image there first (an OCI layout directory or docker archive)")
    store = _Store(path)
    if store.has("index.json"):
        return _from_oci(store, ref_name)
    if store.has("manifest.json"):
        return _from_docker_archive(store, ref_name)
    raise errors.InvalidImage(
        f"{path} holds neither index.json (an OCI image layout) nor manifest.json (a docker archive); "
        "it is not an image forge or docker wrote")


__all__ = ["load_image", "DOCKER_LAYER_GZIP", "DOCKER_LAYER_TAR", "DOCKER_LAYER_ZSTD", "DOCKER_CONFIG"]
