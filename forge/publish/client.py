"""The OCI distribution API over HTTP for one registry and repository, written on `requests`.

Written on `requests` (already installed with forge: the `docker` SDK depends on it) rather than a
client library: the push protocol is six kinds of request, and owning them lets forge retry, skip,
mount and report exactly as forge.publish.push documents. Every request goes out with the current
`Authorization`; a 401 is answered by forge.publish.token and the request is sent again. Retries
follow forge.publish.retry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlencode, urljoin, urlsplit

import requests

from forge.errors import InsecureRegistryRefused, RegistryError, RegistryUnreachable
from forge.image.model import Blob
from forge.publish.auth import Credentials, find_credentials
from forge.publish.reference import Reference
from forge.publish.retry import RETRY_STATUSES, _Retryable, backoff_sleep
from forge.publish.token import TokenAuth
from forge.publish.wire import add_query, error_codes, reason, registry_errors

_UNSET = object()


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


class RegistryClient(TokenAuth):
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

    def url(self, path_or_url: str) -> str:
        return urljoin(self.base + "/", path_or_url)

    def _same_host(self, url: str) -> bool:
        return urlsplit(url).netloc == urlsplit(self.base).netloc

    def _sleep(self, attempt: int) -> None:
        self.stats.retries += 1
        backoff_sleep(self.backoff, attempt)

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
                raise RegistryUnreachable(f"the TLS handshake with {self.ref.registry} failed ({reason(exc)})."
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
                    f"{urlsplit(url).path}: {reason(exc)}). Check that it is running and that the host and port in "
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

    def ping(self) -> None:
        resp = self.request("GET", "/v2/")
        if resp.status_code != 200:
            raise RegistryError(f"{self.base}/v2/ answered {resp.status_code} ({registry_errors(resp)}); "
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
                            f"{registry_errors(resp)}")

    def get_blob(self, digest: str) -> bytes:
        resp = self.request("GET", f"/v2/{self.ref.repository}/blobs/{digest}")
        if resp.status_code != 200:
            raise RegistryError(f"fetching blob {digest[:19]} from {self.ref.repository}: {resp.status_code} "
                                f"{registry_errors(resp)}")
        return resp.content

    def get_manifest(self, reference: str, accept: tuple[str, ...]) -> tuple[str, bytes]:
        resp = self.request("GET", f"/v2/{self.ref.repository}/manifests/{reference}",
                            headers={"Accept": ", ".join(accept)})
        if resp.status_code == 404:
            raise RegistryError(f"{self.ref.name}:{reference} does not exist in the registry; push it first "
                                f"(`forge push OUT {self.ref.name}:{reference}`).")
        if resp.status_code != 200:
            raise RegistryError(f"fetching manifest {reference} from {self.ref.name}: {resp.status_code} "
                                f"{registry_errors(resp)}")
        return resp.headers.get("Content-Type", "").split(";")[0].strip(), resp.content

    def _check(self, resp: requests.Response, expected: int, what: str) -> None:
        if resp.status_code == expected:
            return
        if resp.status_code in RETRY_STATUSES or resp.status_code == 404 or (
                resp.status_code == 400 and error_codes(resp) & {"DIGEST_INVALID", "BLOB_UPLOAD_INVALID",
                                                                  "BLOB_UPLOAD_UNKNOWN", "SIZE_INVALID"}):
            raise _Retryable(f"{what}: {resp.status_code} {registry_errors(resp)}")
        raise RegistryError(f"{what} in {self.ref.name}: the registry answered {resp.status_code}: "
                            f"{registry_errors(resp)}")

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
            resp = self.request("PUT", add_query(location, digest=blob.digest), data=blob.data,
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
        resp = self.request("PUT", add_query(location, digest=blob.digest), headers={"Content-Length": "0"},
                            retry=False)
        self._check(resp, 201, f"completing blob {blob.digest[:19]}")

    def put_manifest(self, reference: str, manifest: Blob) -> str:
        resp = self.request("PUT", f"/v2/{self.ref.repository}/manifests/{reference}", data=manifest.data,
                            headers={"Content-Type": manifest.media_type})
        if resp.status_code != 201:
            raise RegistryError(f"{self.ref.registry} refused the manifest for {self.ref.name}:{reference} "
                                f"({resp.status_code}): {registry_errors(resp)}")
        got = resp.headers.get("Docker-Content-Digest")
        if got and got != manifest.digest:
            raise RegistryError(f"{self.ref.registry} stored the manifest under {got}, not {manifest.digest}; "
                                f"the registry rewrote it, so the pushed image is not the one forge built.")
        return manifest.digest
