"""DockerArchivePublisher: one tarball that `docker load` accepts and that is an OCI layout too.

Inside, as `docker save` of Docker >= 25 writes it:
    oci-layout, index.json, blobs/sha256/<manifest, config, layers>   the OCI image layout
    manifest.json   [{"Config": "blobs/sha256/..", "RepoTags": [tag], "Layers": ["blobs/sha256/..", ..]}]
The layers stay compressed exactly as built (docker load decompresses them and checks each against
the config's diff_ids), so the archive holds the very blobs a registry would get and load_image()
reads back the same manifest digest. zstd layers are the exception for manifest.json only: Docker's
classic loader cannot read zstd before Docker 23 (20.10 fails with "archive/tar: invalid tar
header"), so manifest.json points at an uncompressed copy of each zstd layer (blobs/sha256/<diff_id>,
as docker save stores layers), while index.json keeps the zstd blobs. The tarball itself is reproducible: sorted members, mtime 0,
root-owned, fixed modes.
"""

from __future__ import annotations

import io
import os
import re
import tarfile
from pathlib import Path

from forge import errors
from forge.image.build import canonical_json
from forge.image.layer import decompress, media_type_compression
from forge.image.model import Image
from forge.publish.base import (CONTAINERD_NAME, REF_NAME, PublishResult, atomic_file, check_file_output,
                                layout_files)

# distribution/reference grammar (simplified: the name must be lower case; the domain may not be).
_DOMAIN = r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*(?::[0-9]+)?)"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_REFERENCE = re.compile(rf"^(?:(?P<domain>{_DOMAIN})/)?(?P<path>{_COMPONENT}(?:/{_COMPONENT})*)(?::(?P<tag>{_TAG}))?$")


def normalize_tag(tag: str) -> tuple[str, str, str]:
    """(tag as docker shows it with :latest added if missing, the fully qualified name, the tag part)."""
    m = _REFERENCE.match(tag or "")
    if not m or len(m.group("path")) > 255:
        raise errors.InvalidReference(
            f"{tag!r} is not a valid image tag: use NAME[:TAG] with a lower-case name, e.g. myapp:1.0 or "
            "registry.example.com/team/myapp:latest (no @digest: a tag names what is loaded)")
    domain, path, t = m.group("domain"), m.group("path"), m.group("tag") or "latest"
    if domain and "." not in domain and ":" not in domain and domain != "localhost":
        # "team/app": without a dot, a port or "localhost" the first part is a path component, not a host
        if not re.fullmatch(_COMPONENT, domain):
            raise errors.InvalidReference(f"{tag!r} is not a valid image tag: {domain!r} must be lower case")
        domain, path = None, f"{domain}/{path}"
    short = f"{domain + '/' if domain else ''}{path}:{t}"
    if domain is None:
        full = f"docker.io/{path if '/' in path else 'library/' + path}:{t}"
    else:
        full = short
    return short, full, t


def archive_bytes(image: Image, tag: str) -> bytes:
    """The docker-archive tarball for `image` tagged `tag`, byte-for-byte reproducible."""
    short, full, t = normalize_tag(tag)
    files = layout_files(image, {REF_NAME: t, CONTAINERD_NAME: full}, "docker-archive")
    config = f"blobs/sha256/{image.config.digest.split(':', 1)[1]}"
    layers = []
    for layer in image.layers:
        if media_type_compression(layer.media_type) == "zstd":
            # Docker's classic loader (manifest.json) reads gzip and plain tar only before Docker 23:
            # give it the uncompressed tar, stored under its own digest (= the diff_id), as docker
            # save does. The OCI index still points at the zstd blobs.
            hexd = layer.diff_id.split(":", 1)[1]
            files[f"blobs/sha256/{hexd}"] = decompress(layer.data)
            layers.append(f"blobs/sha256/{hexd}")
        else:
            layers.append(f"blobs/sha256/{layer.digest.split(':', 1)[1]}")
    files["manifest.json"] = canonical_json([{"Config": config, "RepoTags": [short], "Layers": layers}])
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        dirs = sorted({str(Path(rel).parent) for rel in files} - {"."} | {"blobs"})
        for d in dirs:
            ti = tarfile.TarInfo(d)
            ti.type, ti.mode, ti.mtime, ti.uname, ti.gname = tarfile.DIRTYPE, 0o755, 0, "", ""
            tf.addfile(ti)
        for rel in sorted(files):
            ti = tarfile.TarInfo(rel)
            ti.size, ti.mode, ti.mtime, ti.uname, ti.gname = len(files[rel]), 0o644, 0, "", ""
            tf.addfile(ti, io.BytesIO(files[rel]))
    return buf.getvalue()


class DockerArchivePublisher:
    """Writes the image to `path` as a docker-archive tarball tagged `tag` (`docker load -i PATH`).

    An existing forge archive at `path` is replaced atomically; any other file there raises
    errors.OutputPathConflict and is left untouched.
    """

    def __init__(self, path: Path | str, tag: str):
        self.path = Path(path)
        self.tag = normalize_tag(tag)[0]

    def publish(self, image: Image) -> PublishResult:
        check_file_output(self.path)
        data = archive_bytes(image, self.tag)
        with atomic_file(self.path) as tmp:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        return PublishResult(digest=image.digest, location=f"docker-archive:{self.path}")
