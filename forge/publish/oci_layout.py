"""OciLayoutPublisher: the image as an OCI image layout directory (image-spec image-layout.md)."""

from __future__ import annotations

from pathlib import Path

from forge.image.model import Image
from forge.publish.base import (REF_NAME, PublishResult, atomic_dir, check_dir_output, check_ref_name,
                                layout_files, write_files)

DEFAULT_REF_NAME = "latest"


class OciLayoutPublisher:
    """Writes `path/` = oci-layout, index.json (one manifest, annotated with its ref name), blobs/sha256/*.

    Tools read it as `oci:PATH:REF` (skopeo, crane, buildah, podman). An existing forge layout at
    `path` is replaced atomically; anything else there raises errors.OutputPathConflict untouched.
    """

    def __init__(self, path: Path | str, ref_name: str | None = None):
        self.path = Path(path)
        self.ref_name = check_ref_name(ref_name if ref_name is not None else DEFAULT_REF_NAME)

    def publish(self, image: Image) -> PublishResult:
        check_dir_output(self.path)
        files = layout_files(image, {REF_NAME: self.ref_name}, "oci-layout")
        with atomic_dir(self.path) as tmp:
            write_files(tmp, files)
        return PublishResult(digest=image.digest, location=f"oci:{self.path}:{self.ref_name}")
