"""Real registries for push tests: Debian's `docker-registry` (CNCF distribution 2.8) on 127.0.0.1.

Three session registries: anonymous, htpasswd (bcrypt, via `htpasswd` from apache2-utils) and token
auth (the registry verifies RS256 JWTs from a small token service run here, the flow Docker Hub, GHCR
and most hosted registries use). Plus a loopback HTTP proxy that counts requests and can cut a
connection half-way through an upload, to test skipping and resuming.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import hashlib
import http.client
import io
import json
import os
import random
import secrets
import socket
import struct
import subprocess
import tarfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from forge.image.model import OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST, Blob, Image, Layer

REGISTRY_BIN = "/usr/bin/docker-registry"
USER, PASSWORD = "forge", "s3cret-pass"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_apt_packages() -> None:
    missing = [pkg for pkg, exe in (("docker-registry", REGISTRY_BIN), ("apache2-utils", "/usr/bin/htpasswd"))
               if not Path(exe).exists()]
    if not missing:
        return
    if os.geteuid() != 0:
        pytest.fail(f"needs Debian packages {missing} (apt-get install {' '.join(missing)})")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env, capture_output=True)
    subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], check=True, env=env,
                   capture_output=True)


# --- token service ---------------------------------------------------------------------------------
def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenService:
    """Issues registry bearer tokens (JWT, RS256, certificate in `x5c`) to USER:PASSWORD; anonymous
    callers get pull-only tokens. Counts the token requests it answers."""

    def __init__(self, workdir: Path, service: str, issuer: str):
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        self.service, self.issuer = service, issuer
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "forge test token signer")])
        now = dt.datetime.now(dt.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(self.key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
                .not_valid_after(now + dt.timedelta(days=30))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(self.key, hashes.SHA256()))
        self.cert_der = cert.public_bytes(serialization.Encoding.DER)
        self.cert_path = workdir / "token-signer.pem"
        self.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.requests: list[dict] = []
        self.port = free_port()
        self.realm = f"http://127.0.0.1:{self.port}/token"
        svc = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                query = parse_qs(urlsplit(self.path).query)
                user = None
                header = self.headers.get("Authorization", "")
                if header.startswith("Basic "):
                    u, _, p = base64.b64decode(header[6:]).decode().partition(":")
                    if (u, p) != (USER, PASSWORD):
                        svc.requests.append({"user": u, "ok": False})
                        return self._send(401, {"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]})
                    user = u
                scopes = query.get("scope", [])
                svc.requests.append({"user": user, "ok": True, "scopes": scopes})
                self._send(200, {"token": svc.issue(user, scopes), "expires_in": 300})

            def _send(self, status, doc):
                body = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def issue(self, user: str | None, scopes: list[str]) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            wanted = [a for a in actions.split(",") if a]
            granted = wanted if user else [a for a in wanted if a == "pull"]
            if kind == "repository" and granted:
                access.append({"type": "repository", "name": name, "actions": granted})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(self.cert_der).decode()]}
        claims = {"iss": self.issuer, "sub": user or "", "aud": self.service, "exp": now + 300, "nbf": now - 10,
                  "iat": now, "jti": secrets.token_hex(8), "access": access}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        sig = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64url(sig)}"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


# --- the registry ------------------------------------------------------------------------------------
@dataclass
class Registry:
    workdir: Path
    auth: str | None = None           # None, "htpasswd" or "token"
    port: int = 0
    proc: subprocess.Popen | None = None
    token_service: TokenService | None = None
    log_path: Path = field(default_factory=Path)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def start(self) -> "Registry":
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        storage = self.workdir / "storage"
        storage.mkdir(exist_ok=True)
        lines = ["version: 0.1", "log:", "  level: info", "  accesslog:", "    disabled: false",
                 "storage:", "  filesystem:", f"    rootdirectory: {storage}", "  delete:", "    enabled: true",
                 "http:", f"  addr: 127.0.0.1:{self.port}", f"  secret: {secrets.token_hex(16)}"]
        if self.auth == "htpasswd":
            htpasswd = self.workdir / "htpasswd"
            out = subprocess.run(["htpasswd", "-Bbn", USER, PASSWORD], check=True, capture_output=True, text=True)
            htpasswd.write_text(out.stdout)
            lines += ["auth:", "  htpasswd:", "    realm: forge-test", f"    path: {htpasswd}"]
        elif self.auth == "token":
            self.token_service = TokenService(self.workdir, service="forge-test-registry", issuer="forge-test-issuer")
            lines += ["auth:", "  token:", f"    realm: {self.token_service.realm}",
                      "    service: forge-test-registry", "    issuer: forge-test-issuer",
                      f"    rootcertbundle: {self.token_service.cert_path}"]
        config = self.workdir / "config.yml"
        config.write_text("\n".join(lines) + "\n")
        self.log_path = self.workdir / "registry.log"
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([REGISTRY_BIN, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT,
                                     env={**os.environ, "OTEL_TRACES_EXPORTER": "none"})
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited: {self.log_path.read_text()[-2000:]}")
            try:
                requests.get(f"{self.url}/v2/", timeout=1)
                return self
            except requests.ConnectionError:
                time.sleep(0.1)
        raise RuntimeError("docker-registry did not start listening within 20 s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.token_service:
            self.token_service.stop()

    def has_blob(self, repository: str, digest: str) -> bool:
        """Look at the storage directly (no HTTP, so no auth and nothing counted)."""
        algo, hexd = digest.split(":")
        root = self.workdir / "storage" / "docker" / "registry" / "v2"
        return ((root / "blobs" / algo / hexd[:2] / hexd / "data").is_file()
                and (root / "repositories" / repository / "_layers" / algo / hexd / "link").is_file())


@pytest.fixture(scope="session")
def registry(tmp_path_factory):
    """An anonymous registry on 127.0.0.1 (plain HTTP)."""
    ensure_apt_packages()
    reg = Registry(tmp_path_factory.mktemp("registry-anon")).start()
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def registry_htpasswd(tmp_path_factory):
    """A registry that wants USER:PASSWORD over HTTP Basic (htpasswd file, bcrypt)."""
    ensure_apt_packages()
    reg = Registry(tmp_path_factory.mktemp("registry-htpasswd"), auth="htpasswd").start()
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def registry_token(tmp_path_factory):
    """A registry that wants bearer tokens from a token service (which knows USER:PASSWORD)."""
    ensure_apt_packages()
    import cryptography  # noqa: F401,PLC0415  (test extra)
    reg = Registry(tmp_path_factory.mktemp("registry-token"), auth="token").start()
    yield reg
    reg.stop()


# --- a counting, fault-injecting proxy ---------------------------------------------------------------
_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authorization",
        "proxy-authenticate"}


class Proxy:
    """Forwards HTTP to a registry on `upstream_port`, keeping the Host header (so the registry's
    Location URLs point back here), and records every request as (method, path, status).

    `inject(method, path, body_length)` may return, per request:
      "cut"   read half the body, then reset the connection (RST): a link dropped mid-upload;
      "hold"  stall until `release` is set, then reset the connection as "cut" does (lets a test kill
              the client while its upload is in flight);
      int     answer with that HTTP status instead of forwarding (e.g. 503);
      None    forward as usual.
    """

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.log: list[tuple[str, str, int]] = []   # status -1: cut, -2: held
        self.inject = None
        self.release = threading.Event()
        self.held = threading.Event()
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                action = proxy.inject(self.command, self.path, length) if proxy.inject else None
                if action == "hold":
                    with proxy.lock:
                        proxy.log.append((self.command, self.path, -2))
                    proxy.held.set()
                    proxy.release.wait(60)
                if action in ("cut", "hold"):
                    self.rfile.read(length // 2)
                    if action == "cut":
                        with proxy.lock:
                            proxy.log.append((self.command, self.path, -1))
                    # RST instead of FIN, like a dropped link
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.close_connection = True
                    self.connection.close()
                    return
                body = self.rfile.read(length) if length else None
                if isinstance(action, int):
                    with proxy.lock:
                        proxy.log.append((self.command, self.path, action))
                    self.send_response(action)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                conn = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                with proxy.lock:
                    proxy.log.append((self.command, self.path, resp.status))
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in _HOP and not (k.lower() == "content-length" and self.command != "HEAD"):
                        self.send_header(k, v)
                if self.command != "HEAD":
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def reset(self) -> None:
        with self.lock:
            self.log.clear()

    def count(self, method: str | None = None, contains: str = "") -> int:
        with self.lock:
            return sum(1 for m, p, _ in self.log if (method is None or m == method) and contains in p)

    def uploads(self) -> list[tuple[str, str, int]]:
        """Requests that carry or start blob data (POST/PATCH/PUT under /blobs/uploads/)."""
        with self.lock:
            return [e for e in self.log if "/blobs/uploads/" in e[1] and e[0] in ("POST", "PATCH", "PUT")]

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy_to():
    """Factory: `proxy_to(registry)` starts a Proxy in front of it; stopped after the test."""
    started = []

    def make(reg: Registry) -> Proxy:
        p = Proxy(reg.port)
        started.append(p)
        return p

    yield make
    for p in started:
        p.stop()


# --- small hand-made images ----------------------------------------------------------------------------
def _layer(files: dict[str, bytes]) -> Layer:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o755, 0
            tar.addfile(info, io.BytesIO(data))
    tar_bytes = raw.getvalue()
    gz = gzip.compress(tar_bytes, compresslevel=1, mtime=0)
    return Layer(OCI_LAYER_GZIP, gz, diff_id="sha256:" + hashlib.sha256(tar_bytes).hexdigest(),
                 uncompressed_size=len(tar_bytes))


def make_image(seed: str, *, layer_sizes=(4096,), architecture: str = "amd64", os_name: str = "linux",
               entrypoint=("/app",)) -> Image:
    """A valid OCI image whose layers hold `seed`-derived random (incompressible) bytes, so each seed
    gives blobs no registry has seen."""
    rng = random.Random(seed)
    layers = tuple(_layer({f"data/{i}.bin": rng.randbytes(n)}) for i, n in enumerate(layer_sizes))
    config = {"architecture": architecture, "os": os_name, "created": "1970-01-01T00:00:00Z",
              "config": {"Entrypoint": list(entrypoint), "Env": ["PATH=/"]},
              "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]}, "history": []}
    config_blob = Blob(OCI_CONFIG, json.dumps(config, sort_keys=True, separators=(",", ":")).encode())
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config_blob.descriptor(),
                "layers": [layer.descriptor() for layer in layers]}
    return Image(config=config_blob, layers=layers,
                 manifest=Blob(OCI_MANIFEST, json.dumps(manifest, separators=(",", ":")).encode()))


def write_oci_layout(image: Image, out: Path) -> Path:
    """The image as an OCI image layout directory (what `forge build` writes)."""
    blobs = out / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    for blob in image.blobs():
        (blobs / blob.digest.split(":")[1]).write_bytes(blob.data)
    (out / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    (out / "index.json").write_text(json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                                                "manifests": [image.manifest.descriptor()]}))
    return out


__all__ = ["Registry", "Proxy", "make_image", "write_oci_layout", "USER", "PASSWORD", "free_port"]
