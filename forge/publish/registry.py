"""Push an Image to a registry over the OCI distribution API.

Written on `requests` (already installed with forge: the `docker` SDK depends on it) rather than a
client library: the push protocol is six kinds of request, and owning them lets forge retry, skip,
mount and report exactly as documented below. oras-py would add a dependency for less control.

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

Auth: every request goes out with the current `Authorization`; a 401 is answered from its
`WWW-Authenticate` challenge (Basic: the credentials; Bearer: a token from the challenge's realm for
`repository:<repo>:pull,push`, fetched with the credentials or anonymously) and the request is sent again.

Failures: connection errors and 5xx/429 answers are retried with exponential backoff (bounded:
`retries` retries, at most 8 s apart). A blob upload that breaks half-way is started again from its
HEAD, since an upload session cannot be trusted after a reset. An interrupted push run again
completes: blobs that made it are skipped by their HEAD.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import requests

from forge import console
from forge.cache import atomic_write_bytes, cache_root, file_lock
from forge.errors import (ImageUnsuitable, InsecureRegistryRefused, InvalidReference, RegistryAuthFailed,
                          RegistryError, RegistryUnreachable)
from forge.image.model import OCI_INDEX, OCI_MANIFEST, Blob, Image, Layer, sha256_digest
from forge.publish.auth import Challenge, Credentials, find_credentials, parse_challenge
from forge.publish.base import PublishResult
from forge.publish.reference import Reference, parse_reference


def image_path_of(path) -> "Path":
    """A forge build output directory (with forge-build.json) -> its image; any other path as it is."""
    path = Path(path)
    if path.is_dir() and (path / "forge-build.json").is_file():
        for name in ("image", "image.tar"):
            if (path / name).exists():
                return path / name
    return path


RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
DEFAULT_CHUNK_SIZE = 8 * 2**20
MAX_BACKOFF = 8.0
_UNSET = object()


class _Retryable(Exception):
    """A blob upload went wrong in a way that starting it again can fix."""

    def __init__(self, message: str, connection: bool = False):
        super().__init__(message)
        self.connection = connection


def _registry_errors(resp: requests.Response) -> str:
    try:
        errs = resp.json().get("errors") or []
        parts = [f"{e.get('code', '?')}: {e.get('message', '')}".strip() for e in errs if isinstance(e, dict)]
        if parts:
            return "; ".join(parts)
    except ValueError:
        pass
    text = (resp.text or "").strip().replace("\n", " ")
    return text[:300] or resp.reason or "no details"


def _error_codes(resp: requests.Response) -> set[str]:
    try:
        return {e.get("code") for e in resp.json().get("errors") or [] if isinstance(e, dict)}
    except (ValueError, AttributeError):
        return set()


def _reason(exc: BaseException) -> str:
    """The innermost cause of a requests exception, e.g. "[Errno 111] Connection refused"."""
    while exc.__context__ is not None and exc.__context__ is not exc:
        exc = exc.__context__
    text = str(exc)
    return (text.rsplit(": ", 1)[-1] if "Errno" in text else text)[:200] or exc.__class__.__name__


def _add_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


@dataclass
class PushStats:
    uploaded: int = 0
    uploaded_bytes: int = 0
    existing: int = 0
    mounted: int = 0
    requests: int = 0
    retries: int = 0
    seconds: float = 0.0
    by_method: dict[str, int] = field(default_factory=dict)


class RegistryClient:
    """One registry, one repository: authenticated requests with retries."""

    def __init__(self, ref: Reference, *, insecure: bool = False, credentials: Credentials | None | object = _UNSET,
                 retries: int = 4, backoff: float = 0.5, timeout: float = 60.0, actions: str = "pull,push"):
        if insecure and not ref.is_loopback():
            raise InsecureRegistryRefused(
                f"--insecure sends images and credentials over plain HTTP, which forge allows only for a registry on "
                f"this machine (localhost, 127.0.0.0/8, ::1); {ref.registry} is not one. Serve the registry over "
                f"HTTPS, or reach it through a loopback tunnel.")
        self.ref = ref
        self.insecure = insecure
        self.scheme = "http" if insecure else "https"
        self.base = f"{self.scheme}://{ref.api_host}"
        self.credentials = find_credentials(ref.registry) if credentials is _UNSET else credentials
        self.retries, self.backoff, self.timeout = retries, backoff, timeout
        self.session = requests.Session()
        self.session.headers["User-Agent"] = "forge"
        self.stats = PushStats()
        self._auth: str | None = None
        self._scopes: list[str] = [f"repository:{ref.repository}:{actions}"]
        self._action = "push" if "push" in actions else "pull"
        self._sent_credentials = False

    # --- transport -------------------------------------------------------------------------------
    def url(self, path_or_url: str) -> str:
        return urljoin(self.base + "/", path_or_url)

    def _same_host(self, url: str) -> bool:
        return urlsplit(url).netloc == urlsplit(self.base).netloc

    def _sleep(self, attempt: int) -> None:
        self.stats.retries += 1
        time.sleep(min(self.backoff * 2**attempt, MAX_BACKOFF))

    def _send(self, method: str, url: str, *, headers: dict | None = None, data: bytes | None = None,
              retry: bool = True) -> requests.Response:
        hdrs = dict(headers or {})
        if self._auth and self._same_host(url):
            hdrs["Authorization"] = self._auth
        attempts = self.retries + 1 if retry else 1
        for attempt in range(attempts):
            self.stats.requests += 1
            self.stats.by_method[method] = self.stats.by_method.get(method, 0) + 1
            try:
                resp = self.session.request(method, url, headers=hdrs, data=data, timeout=self.timeout,
                                            allow_redirects=method in ("GET", "HEAD"))
            except requests.exceptions.SSLError as exc:
                hint = (" If it is a plain-HTTP registry on this machine, use --insecure." if self.ref.is_loopback()
                        else " If the registry's certificate comes from a private CA, point REQUESTS_CA_BUNDLE at "
                             "that CA's certificate.")
                raise RegistryUnreachable(f"the TLS handshake with {self.ref.registry} failed ({_reason(exc)})."
                                          f"{hint}") from None
            except (requests.ConnectionError, requests.Timeout) as exc:
                if not retry:  # an upload request: the caller starts the blob again
                    raise _Retryable(f"{method} {urlsplit(url).path}: connection lost ({exc.__class__.__name__})",
                                     connection=True) from None
                if attempt + 1 < attempts:
                    self._sleep(attempt)
                    continue
                raise RegistryUnreachable(
                    f"cannot reach the registry at {self.base} after {attempts} attempts ({method} "
                    f"{urlsplit(url).path}: {_reason(exc)}). Check that it is running and that the host and port in "
                    f"the reference are right.") from None
            if resp.status_code in RETRY_STATUSES and attempt + 1 < attempts:
                self._sleep(attempt)
                continue
            return resp
        raise AssertionError("unreachable")

    def request(self, method: str, path_or_url: str, *, headers: dict | None = None, data: bytes | None = None,
                retry: bool = True) -> requests.Response:
        url = self.url(path_or_url)
        resp = self._send(method, url, headers=headers, data=data, retry=retry)
        if resp.status_code == 401 and self._same_host(url):
            self._authenticate(resp)
            resp = self._send(method, url, headers=headers, data=data, retry=retry)
            if resp.status_code == 401:
                raise self._denied("rejected")
        if resp.status_code == 403:
            raise self._denied("forbade")
        return resp

    # --- auth ------------------------------------------------------------------------------------
    def _denied(self, verb: str) -> RegistryAuthFailed:
        target = f"{self.ref.registry}/{self.ref.repository}"
        if self.credentials is None:
            return RegistryAuthFailed(
                f"{target} needs credentials to {self._action} and forge found none. Run `docker login {self.ref.registry}`, "
                f"or set FORGE_REGISTRY_USER and FORGE_REGISTRY_PASSWORD.")
        return RegistryAuthFailed(
            f"{self.ref.registry} {verb} the {self._action} of {target} as {self.credentials.username!r} (credentials from "
            f"{self.credentials.source}). Check the user name and password (or token) and that the account may "
            f"{self._action} this repository.")

    def _authenticate(self, resp: requests.Response) -> None:
        challenge = parse_challenge(resp.headers.get("WWW-Authenticate", ""))
        if challenge is None:
            raise RegistryAuthFailed(f"{self.ref.registry} answered 401 without a WWW-Authenticate challenge.")
        if challenge.scheme == "basic":
            if self.credentials is None or self._sent_credentials:
                raise self._denied("rejected")
            self._auth = self.credentials.basic_header()
            self._sent_credentials = True
        elif challenge.scheme == "bearer":
            scope = challenge.params.get("scope")
            if scope:
                for s in scope.split(" "):
                    if s not in self._scopes:
                        self._scopes.append(s)
            self._auth = "Bearer " + self._fetch_token(challenge)
        else:
            raise RegistryAuthFailed(f"{self.ref.registry} asks for {challenge.scheme!r} authentication, which "
                                     f"forge does not speak (it speaks Basic and Bearer).")

    def _fetch_token(self, challenge: Challenge) -> str:
        realm = challenge.params.get("realm")
        if not realm:
            raise RegistryAuthFailed(f"{self.ref.registry}'s Bearer challenge names no token realm.")
        params: list[tuple[str, str]] = []
        if challenge.params.get("service"):
            params.append(("service", challenge.params["service"]))
        params += [("scope", s) for s in self._scopes]
        creds = self.credentials
        try:
            if creds is not None and creds.identity_token:
                resp = self.session.post(realm, data=params + [("grant_type", "refresh_token"),
                                                               ("refresh_token", creds.secret),
                                                               ("client_id", "forge")], timeout=self.timeout)
            else:
                headers = {"Authorization": creds.basic_header()} if creds is not None else {}
                resp = self.session.get(realm, params=params, headers=headers, timeout=self.timeout)
        except requests.RequestException as exc:
            raise RegistryUnreachable(f"cannot reach the token service {realm} of {self.ref.registry}: "
                                      f"{exc.__class__.__name__}.") from None
        self.stats.requests += 1
        if resp.status_code in (401, 403):
            raise self._denied("rejected")
        if resp.status_code != 200:
            raise RegistryError(f"the token service {realm} answered {resp.status_code}: {_registry_errors(resp)}")
        try:
            doc = resp.json()
            token = doc.get("token") or doc.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not token:
            raise RegistryError(f"the token service {realm} answered without a token.")
        if creds is not None:
            self._sent_credentials = True
        return token

    # --- API -------------------------------------------------------------------------------------
    def ping(self) -> None:
        resp = self.request("GET", "/v2/")
        if resp.status_code != 200:
            raise RegistryError(f"{self.base}/v2/ answered {resp.status_code} ({_registry_errors(resp)}); "
                                f"is this an OCI registry?")

    def blob_exists(self, digest: str) -> bool:
        resp = self.request("HEAD", f"/v2/{self.ref.repository}/blobs/{digest}")
        if resp.status_code == 200:
            return True
        if resp.status_code == 404:
            return False
        if resp.status_code in RETRY_STATUSES:
            raise _Retryable(f"HEAD blob answered {resp.status_code}")
        raise RegistryError(f"checking blob {digest[:19]} in {self.ref.repository}: {resp.status_code} "
                            f"{_registry_errors(resp)}")

    def get_blob(self, digest: str) -> bytes:
        resp = self.request("GET", f"/v2/{self.ref.repository}/blobs/{digest}")
        if resp.status_code != 200:
            raise RegistryError(f"fetching blob {digest[:19]} from {self.ref.repository}: {resp.status_code} "
                                f"{_registry_errors(resp)}")
        return resp.content

    def get_manifest(self, reference: str, accept: tuple[str, ...]) -> tuple[str, bytes]:
        resp = self.request("GET", f"/v2/{self.ref.repository}/manifests/{reference}",
                            headers={"Accept": ", ".join(accept)})
        if resp.status_code == 404:
            raise RegistryError(f"{self.ref.name}:{reference} does not exist in the registry; push it first "
                                f"(`forge push OUT {self.ref.name}:{reference}`).")
        if resp.status_code != 200:
            raise RegistryError(f"fetching manifest {reference} from {self.ref.name}: {resp.status_code} "
                                f"{_registry_errors(resp)}")
        return resp.headers.get("Content-Type", "").split(";")[0].strip(), resp.content

    def _check(self, resp: requests.Response, expected: int, what: str) -> None:
        if resp.status_code == expected:
            return
        if resp.status_code in RETRY_STATUSES or resp.status_code == 404 or (
                resp.status_code == 400 and _error_codes(resp) & {"DIGEST_INVALID", "BLOB_UPLOAD_INVALID",
                                                                  "BLOB_UPLOAD_UNKNOWN", "SIZE_INVALID"}):
            raise _Retryable(f"{what}: {resp.status_code} {_registry_errors(resp)}")
        raise RegistryError(f"{what} in {self.ref.name}: the registry answered {resp.status_code}: "
                            f"{_registry_errors(resp)}")

    def start_upload(self, mount: str | None = None, mount_from: str | None = None) -> requests.Response:
        path = f"/v2/{self.ref.repository}/blobs/uploads/"
        if mount and mount_from:
            path += "?" + urlencode({"mount": mount, "from": mount_from})
        resp = self.request("POST", path, headers={"Content-Length": "0"})
        if resp.status_code not in (201, 202):
            self._check(resp, 202, "starting a blob upload")
        return resp

    def _location(self, resp: requests.Response) -> str:
        loc = resp.headers.get("Location")
        if not loc:
            raise RegistryError(f"{self.ref.registry} started an upload without a Location header.")
        return urljoin(resp.url, loc)

    def upload(self, start: requests.Response, blob: Blob, chunk_size: int) -> None:
        location = self._location(start)
        octet = {"Content-Type": "application/octet-stream"}
        if blob.size <= chunk_size:
            resp = self.request("PUT", _add_query(location, digest=blob.digest), data=blob.data,
                                headers={**octet, "Content-Length": str(blob.size)}, retry=False)
            self._check(resp, 201, f"uploading blob {blob.digest[:19]}")
            return
        for offset in range(0, blob.size, chunk_size):
            chunk = blob.data[offset:offset + chunk_size]
            resp = self.request("PATCH", location, data=chunk, retry=False,
                                headers={**octet, "Content-Length": str(len(chunk)),
                                         "Content-Range": f"{offset}-{offset + len(chunk) - 1}"})
            self._check(resp, 202, f"uploading a chunk of blob {blob.digest[:19]}")
            location = self._location(resp)
        resp = self.request("PUT", _add_query(location, digest=blob.digest), headers={"Content-Length": "0"},
                            retry=False)
        self._check(resp, 201, f"completing blob {blob.digest[:19]}")

    def put_manifest(self, reference: str, manifest: Blob) -> str:
        resp = self.request("PUT", f"/v2/{self.ref.repository}/manifests/{reference}", data=manifest.data,
                            headers={"Content-Type": manifest.media_type})
        if resp.status_code != 201:
            raise RegistryError(f"{self.ref.registry} refused the manifest for {self.ref.name}:{reference} "
                                f"({resp.status_code}): {_registry_errors(resp)}")
        got = resp.headers.get("Docker-Content-Digest")
        if got and got != manifest.digest:
            raise RegistryError(f"{self.ref.registry} stored the manifest under {got}, not {manifest.digest}; "
                                f"the registry rewrote it, so the pushed image is not the one forge built.")
        return manifest.digest


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


DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
_MANIFESTS = (OCI_MANIFEST, DOCKER_MANIFEST)
_INDEXES = (OCI_INDEX, DOCKER_MANIFEST_LIST)


def uncompressed_length(media_type: str, data: bytes) -> int:
    """Bytes of the tar inside a layer blob (gzip, zstd or plain), counted while streaming."""
    if media_type.endswith("+zstd") or media_type.endswith(".zstd"):
        import zstandard

        reader = zstandard.ZstdDecompressor().stream_reader(data)
        total = 0
        while chunk := reader.read(1 << 20):
            total += len(chunk)
        return total
    if media_type.endswith("gzip") or data[:2] == b"\x1f\x8b":
        import zlib

        d, total, view = zlib.decompressobj(16 + zlib.MAX_WBITS), 0, memoryview(data)
        for i in range(0, len(data), 1 << 20):
            total += len(d.decompress(view[i:i + (1 << 20)]))
        return total + len(d.flush())
    return len(data)


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
