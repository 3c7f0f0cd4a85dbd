"""Push an Image to a registry over the OCI distribution API (RegistryPublisher).

The push, blob by blob (layers, then the config), then the manifest:
- `HEAD /v2/<repo>/blobs/<digest>`: 200 means the registry has it; skip.
- else if forge pushed the blob to another repository of the same registry before (remembered in
  `<cache>/registry/blobs.json`): `POST /v2/<repo>/blobs/uploads/?mount=<digest>&from=<other>`;
  201 means mounted without sending a byte; 202 means "upload it after all" (and gives the session).
- else `POST /v2/<repo>/blobs/uploads/` and then either one `PUT <location>?digest=` with the whole
  blob (monolithic), or, for blobs larger than `chunk_size`, `PATCH <location>` per chunk with
  `Content-Range` and a final empty `PUT <location>?digest=` (chunked).
- `PUT /v2/<repo>/manifests/<tag>` with the manifest's media type; the registry's
  `Docker-Content-Digest` must be the image's digest.

Failures: connection errors and 5xx/429 answers are retried with exponential backoff (bounded:
`retries` retries, at most 8 s apart). A blob upload that breaks half-way is started again from its
HEAD, since an upload session cannot be trusted after a reset. An interrupted push run again
completes: blobs that made it are skipped by their HEAD.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from forge import console
from forge.cache import atomic_write_bytes, cache_root, file_lock
from forge.errors import InvalidReference, RegistryAuthFailed, RegistryError, RegistryUnreachable
from forge.image.model import Blob, Image
from forge.output import image_path_in
from forge.publish.base import PublishResult
from forge.publish.client import _UNSET, PushStats, RegistryClient
from forge.publish.reference import Reference, parse_reference
from forge.publish.retry import _Retryable

DEFAULT_CHUNK_SIZE = 8 * 2**20


def image_path_of(path) -> Path:
    """A forge build output directory (forge.output) -> its image; any other path as it is."""
    return image_path_in(path) or Path(path)


class BlobIndex:
    """Which repositories of which registry forge has seen each blob in (for cross-repo mounts)."""

    def __init__(self, path=None):
        self.path = path or cache_root() / "registry" / "blobs.json"

    def _load(self) -> dict:
        try:
            doc = json.loads(self.path.read_text())
            return doc if isinstance(doc, dict) else {}
        except (OSError, ValueError):
            return {}

    def source_for(self, registry: str, digest: str, exclude: str) -> str | None:
        repos = self._load().get(registry, {}).get(digest, [])
        others = [r for r in repos if r != exclude]
        return others[-1] if others else None

    def record(self, registry: str, repository: str, digests: list[str]) -> None:
        if not digests:
            return
        with file_lock(self.path.with_suffix(".lock")):
            doc = self._load()
            reg = doc.setdefault(registry, {})
            for d in digests:
                repos = [r for r in reg.get(d, []) if r != repository] + [repository]
                reg[d] = repos[-8:]  # the most recent few are enough to mount from
            atomic_write_bytes(self.path, json.dumps(doc, indent=1, sort_keys=True).encode())


class RegistryPublisher:
    """Publisher: put an Image in a registry under `ref` (a tag, or a digest that must match)."""

    def __init__(self, ref: str | Reference, *, insecure: bool = False, credentials=_UNSET, retries: int = 4,
                 backoff: float = 0.5, timeout: float = 60.0, chunk_size: int = DEFAULT_CHUNK_SIZE,
                 blob_index: BlobIndex | None = None, log: Callable[[str], None] | None = console.info):
        self.ref = parse_reference(ref) if isinstance(ref, str) else ref
        self.client = RegistryClient(self.ref, insecure=insecure, credentials=credentials, retries=retries,
                                     backoff=backoff, timeout=timeout)
        self.chunk_size = max(1, chunk_size)
        self.index = blob_index or BlobIndex()
        self.log = log or (lambda _msg: None)

    @property
    def stats(self) -> PushStats:
        return self.client.stats

    def publish(self, image: Image) -> PublishResult:
        if self.ref.digest and self.ref.digest != image.digest:
            raise InvalidReference(f"{self.ref} names digest {self.ref.digest}, but the image's digest is "
                                   f"{image.digest}; drop the @digest part or push the image it names.")
        start = time.monotonic()
        self.client.ping()
        done: list[str] = []
        try:
            roles = [(layer, f"layer {i + 1}/{len(image.layers)}") for i, layer in enumerate(image.layers)]
            for blob, role in [*roles, (image.config, "config")]:
                outcome = self._push_blob(blob)
                done.append(blob.digest)
                self.log(f"{role:<10} {blob.digest[7:19]} {blob.size / 2**20:8.2f} MiB  {outcome}")
        finally:
            self.index.record(self.ref.registry, self.ref.repository, done)
        self.client.put_manifest(self.ref.tag or image.digest, image.manifest)
        self.stats.seconds = time.monotonic() - start
        # skopeo's transport syntax, like the other publishers: docker://REF@sha256:...
        return PublishResult(digest=image.digest, location=f"docker://{self.pushed_reference(image)}")

    def pushed_reference(self, image: Image) -> str:
        """What `forge push` prints: the reference with the image's digest, REF@sha256:..."""
        return str(self.ref.with_digest(image.digest))

    def _push_blob(self, blob: Blob) -> str:
        client = self.client
        last: Exception | None = None
        for attempt in range(client.retries + 1):
            if attempt:
                client._sleep(attempt - 1)
            try:
                if client.blob_exists(blob.digest):
                    self.stats.existing += 1
                    return "already in the registry"
                source = self.index.source_for(self.ref.registry, blob.digest, exclude=self.ref.repository)
                start = None
                if source:
                    try:
                        start = client.start_upload(mount=blob.digest, mount_from=source)
                    except RegistryAuthFailed:
                        start = None  # no pull access to the source repository: upload instead
                    if start is not None and start.status_code == 201:
                        self.stats.mounted += 1
                        return f"mounted from {source}"
                if start is None:
                    start = client.start_upload()
                client.upload(start, blob, self.chunk_size)
                self.stats.uploaded += 1
                self.stats.uploaded_bytes += blob.size
                return "uploaded" + (" (chunked)" if blob.size > self.chunk_size else "")
            except _Retryable as exc:
                last = exc
        if isinstance(last, _Retryable) and last.connection:
            raise RegistryUnreachable(f"the connection to {self.ref.registry} kept breaking while uploading blob "
                                      f"{blob.digest} ({client.retries + 1} attempts; last: {last}). Run the push "
                                      f"again: blobs that made it are skipped.")
        raise RegistryError(f"uploading blob {blob.digest} to {self.ref.name} failed {client.retries + 1} times; "
                            f"last: {last}. Run the push again: blobs that made it are skipped.")
