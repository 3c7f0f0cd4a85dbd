"""What every publisher shares: the Publisher protocol, its result, the OCI layout files of an image,
and the rule for output paths (write beside, then rename; never clobber what forge did not write)."""

from __future__ import annotations

import json
import os
import re
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from forge import errors, fsio
from forge.image.build import canonical_json
from forge.image.model import OCI_INDEX, Image

OCI_LAYOUT_FILE = "oci-layout"
OCI_LAYOUT_VERSION = "1.0.0"
REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
# The marker that says "forge wrote this": an annotation on the top-level index.json of every OCI
# layout and docker archive forge writes. Only outputs that carry it are ever replaced.
FORGE_OUTPUT = "dev.forge.output"

# OCI image-layout spec, "ref.name" annotation grammar.
_REF_NAME = re.compile(r"^[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*(?:/[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*)*$")


@dataclass(frozen=True)
class PublishResult:
    digest: str       # the manifest digest, sha256:...
    location: str     # where it went, in skopeo's transport syntax: oci:DIR:REF, docker-archive:FILE, docker-daemon:TAG
    image_id: str = ""  # what the Docker engine calls it (DaemonPublisher only)


@runtime_checkable
class Publisher(Protocol):
    def publish(self, image: Image) -> PublishResult: ...


def check_ref_name(ref_name: str) -> str:
    if not isinstance(ref_name, str) or not _REF_NAME.match(ref_name):
        raise errors.InvalidReference(
            f"{ref_name!r} is not a valid OCI ref name: use letters, digits and . _ - : @ + / between them, "
            "e.g. latest, v1.2.0 or myapp:1.0")
    return ref_name


def layout_files(image: Image, manifest_annotations: dict[str, str], output_kind: str) -> dict[str, bytes]:
    """The files of an OCI image layout holding `image`: oci-layout, index.json, blobs/sha256/*."""
    desc = image.manifest.descriptor()
    desc["annotations"] = dict(sorted(manifest_annotations.items()))
    if not desc["annotations"]:
        del desc["annotations"]
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [desc],
             "annotations": {FORGE_OUTPUT: output_kind}}
    files = {OCI_LAYOUT_FILE: canonical_json({"imageLayoutVersion": OCI_LAYOUT_VERSION}),
             "index.json": canonical_json(index)}
    for blob in image.blobs():
        algo, hexdigest = blob.digest.split(":", 1)
        files[f"blobs/{algo}/{hexdigest}"] = blob.data
    return files


def _is_forge_index(data: bytes) -> bool:
    try:
        index = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(index, dict) and isinstance(index.get("annotations"), dict) and FORGE_OUTPUT in index["annotations"]


def is_forge_layout_dir(path: Path) -> bool:
    index = path / "index.json"
    return (path / OCI_LAYOUT_FILE).is_file() and index.is_file() and not index.is_symlink() \
        and _is_forge_index(index.read_bytes())


def is_forge_archive(path: Path) -> bool:
    try:
        with tarfile.open(path, mode="r:*") as tf:
            for m in tf:
                if m.name.removeprefix("./") == "index.json" and m.isfile():
                    fh = tf.extractfile(m)
                    return fh is not None and _is_forge_index(fh.read())
    except (tarfile.TarError, EOFError, OSError):
        return False
    return False


def check_dir_output(path: Path) -> None:
    """Raise OutputPathConflict unless `path` is absent, an empty directory, or a forge OCI layout."""
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise errors.OutputPathConflict(
            f"{path} exists and is not a directory, so forge will not write an OCI image layout there. "
            "Remove it, or choose another output path.")
    if path.is_dir() and any(path.iterdir()) and not is_forge_layout_dir(path):
        raise errors.OutputPathConflict(
            f"{path} is a non-empty directory that forge did not write (it has no index.json with the "
            f"{FORGE_OUTPUT} annotation), so forge will not replace it with an OCI image layout. "
            "Remove it or empty it, or choose another output path.")


def check_file_output(path: Path) -> None:
    """Raise OutputPathConflict unless `path` is absent or an archive forge wrote."""
    if path.is_symlink() or path.is_dir() or (path.exists() and not path.is_file()):
        raise errors.OutputPathConflict(
            f"{path} exists and is not a regular file, so forge will not write an image archive there. "
            "Remove it, or choose another output path.")
    if path.is_file() and not is_forge_archive(path):
        raise errors.OutputPathConflict(
            f"{path} exists and is not an image archive forge wrote (no index.json with the {FORGE_OUTPUT} "
            "annotation inside), so forge will not overwrite it. Remove it, or choose another output path.")


def atomic_dir(final: Path, check: Callable[[Path], None] | None = None):
    """forge.fsio.atomic_dir for an OCI layout: `check` (default check_dir_output) runs again just
    before the swap, and the new directory gets mode 0755."""
    return fsio.atomic_dir(final, check=check or check_dir_output, mode=0o755)


def atomic_file(final: Path):
    """forge.fsio.atomic_file for an image archive (mode 0644; replaces only an archive forge wrote)."""
    return fsio.atomic_file(final, check=check_file_output, mode=0o644)


def write_files(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in sorted(files.items()):
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        with open(p, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
