"""forge push against real registries (Debian's docker-registry on 127.0.0.1): auth, skipping,
mounting, chunked uploads, retries, interrupted pushes, and the CLI's errors and exit codes."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from forge import errors
from forge.publish.auth import Credentials, find_credentials, parse_challenge
from forge.publish.reference import parse_reference
from forge.publish.registry import BlobIndex, RegistryPublisher, pull_image
from tests.plugins.registry import PASSWORD, USER, free_port, make_image, write_oci_layout

FORGE = [sys.executable, "-m", "forge"]
CREDS = Credentials(USER, PASSWORD, "test")


@pytest.fixture
def index(tmp_path) -> BlobIndex:
    return BlobIndex(tmp_path / "blobs.json")


@pytest.fixture
def clean_env(tmp_path, monkeypatch):
    """No credentials from the environment or the user's Docker config; a private forge cache."""
    for var in ("FORGE_REGISTRY_USER", "FORGE_REGISTRY_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    monkeypatch.setenv("FORGE_CACHE_DIR", str(tmp_path / "cache"))
    return os.environ.copy()


def publisher(host: str, repo: str, index: BlobIndex, **kw) -> RegistryPublisher:
    kw.setdefault("credentials", None)
    kw.setdefault("backoff", 0.01)
    return RegistryPublisher(f"{host}/{repo}", insecure=True, blob_index=index, log=None, **kw)


def stored_digest(registry_url: str, repo: str, tag: str, auth=None) -> str:
    r = requests.get(f"{registry_url}/v2/{repo}/manifests/{tag}", auth=auth,
                     headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}, timeout=10)
    r.raise_for_status()
    return r.headers["Docker-Content-Digest"]


def run_forge(*args, env=None, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([*FORGE, *args], env=env, capture_output=True, text=True, timeout=timeout)


# --- references and credentials ---------------------------------------------------------------------
@pytest.mark.parametrize("text, registry, repo, tag, digest", [
    ("alpine", "docker.io", "library/alpine", "latest", None),
    ("you/app:v1", "docker.io", "you/app", "v1", None),
    ("index.docker.io/you/app", "docker.io", "you/app", "latest", None),
    ("localhost:5000/app", "localhost:5000", "app", "latest", None),
    ("127.0.0.1:5000/a/b/c:1.0", "127.0.0.1:5000", "a/b/c", "1.0", None),
    ("ghcr.io/o/app@sha256:" + "a" * 64, "ghcr.io", "o/app", None, "sha256:" + "a" * 64),
    ("[::1]:5000/app:t", "[::1]:5000", "app", "t", None),
])
def test_reference_parsing(text, registry, repo, tag, digest):
    ref = parse_reference(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repo, tag, digest)


@pytest.mark.parametrize("text", ["https://ghcr.io/o/app", "Upper/App", "app:-bad", "app@sha256:xyz", "host:5000/"])
def test_reference_refused(text):
    with pytest.raises(errors.InvalidReference):
        parse_reference(text)


def test_loopback_detection():
    assert parse_reference("127.0.0.1:5000/a").is_loopback()
    assert parse_reference("127.8.9.1:5000/a").is_loopback()
    assert parse_reference("localhost/a").is_loopback()
    assert parse_reference("[::1]:5000/a").is_loopback()
    assert not parse_reference("10.0.0.1:5000/a").is_loopback()
    assert not parse_reference("registry.example.com/a").is_loopback()


def test_challenge_parsing():
    c = parse_challenge('Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull,push"')
    assert c.scheme == "bearer"
    assert c.params == {"realm": "https://auth.example/token", "service": "reg", "scope": "repository:a/b:pull,push"}
    assert parse_challenge('Basic realm="x"').scheme == "basic"


def test_credentials_sources(tmp_path, clean_env, monkeypatch):
    cfg_dir = tmp_path / "docker-config"
    cfg_dir.mkdir()
    helper_dir = tmp_path / "bin"
    helper_dir.mkdir()
    # A real credential helper speaking Docker's protocol: server URL on stdin, JSON on stdout.
    helper = helper_dir / "docker-credential-forgetest"
    helper.write_text("#!/bin/sh\nread url\ncase \"$url\" in\n"
                      "  helped.example) printf '{\"ServerURL\":\"%s\",\"Username\":\"hu\",\"Secret\":\"hs\"}' \"$url\";;\n"
                      "  https://index.docker.io/v1/) printf '{\"Username\":\"<token>\",\"Secret\":\"refresh\"}';;\n"
                      "  *) echo 'credentials not found in native keychain'; exit 1;;\nesac\n")
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{helper_dir}:{os.environ['PATH']}")
    (cfg_dir / "config.json").write_text(json.dumps({
        "auths": {"https://reg.example:5000/v1/": {"auth": base64.b64encode(b"u1:p:w").decode()},
                  "plain.example": {"username": "u2", "password": "p2"},
                  "docker.io": {"auth": base64.b64encode(b"ignored:x").decode()}},
        "credHelpers": {"helped.example": "forgetest", "docker.io": "forgetest", "broken.example": "nosuchhelper"},
    }))
    c = find_credentials("reg.example:5000")
    assert (c.username, c.secret) == ("u1", "p:w")
    assert find_credentials("plain.example").username == "u2"
    c = find_credentials("helped.example")
    assert (c.username, c.secret, c.source) == ("hu", "hs", "docker-credential-forgetest")
    c = find_credentials("docker.io")
    assert c.identity_token and c.secret == "refresh"
    assert find_credentials("unknown.example") is None
    with pytest.raises(errors.CredentialHelperFailed, match="docker-credential-nosuchhelper"):
        find_credentials("broken.example")
    # credsStore covers registries without their own entry; "not found" falls back to auths
    cfg = json.loads((cfg_dir / "config.json").read_text())
    cfg["credsStore"] = "forgetest"
    (cfg_dir / "config.json").write_text(json.dumps(cfg))
    assert find_credentials("plain.example").username == "u2"
    # the environment wins over everything
    monkeypatch.setenv("FORGE_REGISTRY_USER", "envu")
    monkeypatch.setenv("FORGE_REGISTRY_PASSWORD", "envp")
    assert find_credentials("helped.example").username == "envu"
    monkeypatch.delenv("FORGE_REGISTRY_PASSWORD")
    with pytest.raises(errors.ConfigError, match="FORGE_REGISTRY_PASSWORD"):
        find_credentials("helped.example")


# --- pushing ------------------------------------------------------------------------------------------
def test_push_then_push_again_uploads_nothing(registry, proxy_to, index):
    proxy = proxy_to(registry)
    image = make_image("twice", layer_sizes=(300_000, 50_000))
    t0 = time.monotonic()
    result = publisher(proxy.host, "twice/app:v1", index).publish(image)
    first = time.monotonic() - t0
    assert result.digest == image.digest
    assert result.location == f"docker://{proxy.host}/twice/app:v1@{image.digest}"
    assert stored_digest(registry.url, "twice/app", "v1") == image.digest
    assert len(proxy.uploads()) == 2 * 3            # POST + PUT for each of 2 layers and the config
    first_requests = len(proxy.log)

    proxy.reset()
    t0 = time.monotonic()
    again = publisher(proxy.host, "twice/app:v1", index)
    again.publish(image)
    second = time.monotonic() - t0
    assert proxy.uploads() == []                    # not one blob re-sent
    assert proxy.count("HEAD", "/blobs/") == 3
    assert again.stats.existing == 3 and again.stats.uploaded == 0
    print(f"\nfirst push {first * 1000:.0f} ms, {first_requests} requests; "
          f"second push {second * 1000:.0f} ms, {len(proxy.log)} requests: {proxy.log}")


def test_chunked_upload(registry, proxy_to, index):
    proxy = proxy_to(registry)
    image = make_image("chunked", layer_sizes=(250_000,))
    pub = publisher(proxy.host, "chunked/app:v1", index, chunk_size=64 * 1024)
    pub.publish(image)
    layer = image.layers[0]
    assert proxy.count("PATCH", "/blobs/uploads/") == -(-layer.size // (64 * 1024))   # one PATCH per chunk
    r = requests.get(f"{registry.url}/v2/chunked/app/blobs/{layer.digest}", timeout=10)
    assert r.content == layer.data


def test_cross_repository_mount(registry, proxy_to, index):
    proxy = proxy_to(registry)
    image = make_image("mount", layer_sizes=(100_000,))
    publisher(proxy.host, "mount/first:v1", index).publish(image)
    proxy.reset()
    pub = publisher(proxy.host, "mount/second:v1", index)
    pub.publish(image)
    mounts = [e for e in proxy.log if e[0] == "POST" and "mount=" in e[1]]
    assert len(mounts) == 2 and all(status == 201 for _, _, status in mounts)
    assert "from=mount%2Ffirst" in mounts[0][1]
    assert not any(m in ("PUT", "PATCH") for m, p, _ in proxy.log if "/blobs/" in p)
    assert pub.stats.mounted == 2
    assert registry.has_blob("mount/second", image.layers[0].digest)


def test_htpasswd_auth(registry_htpasswd, index):
    image = make_image("basic-auth")
    reg = registry_htpasswd
    result = publisher(reg.host, "basic/app:v1", index, credentials=CREDS).publish(image)
    assert stored_digest(reg.url, "basic/app", "v1", auth=(USER, PASSWORD)) == result.digest
    with pytest.raises(errors.RegistryAuthFailed, match="rejected"):
        publisher(reg.host, "basic/app:v2", index, credentials=Credentials(USER, "wrong", "test")).publish(image)
    with pytest.raises(errors.RegistryAuthFailed, match="needs credentials"):
        publisher(reg.host, "basic/app:v2", index).publish(image)


def test_bearer_token_auth(registry_token, index):
    reg = registry_token
    tokens = reg.token_service
    image = make_image("bearer")
    before = len(tokens.requests)
    result = publisher(reg.host, "bearer/app:v1", index, credentials=CREDS).publish(image)
    issued = tokens.requests[before:]
    assert issued and all(r["ok"] and r["user"] == USER for r in issued)
    assert any("repository:bearer/app:pull,push" in r["scopes"] for r in issued)
    # the registry really holds it: pull it back (anonymous pull tokens are allowed)
    pulled = pull_image(f"{reg.host}/bearer/app:v1", insecure=True, credentials=None)
    assert pulled.digest == result.digest and pulled.layers[0].data == image.layers[0].data
    with pytest.raises(errors.RegistryAuthFailed, match="rejected"):
        publisher(reg.host, "bearer/app:v2", index, credentials=Credentials(USER, "wrong", "test")).publish(image)
    with pytest.raises(errors.RegistryAuthFailed, match="needs credentials"):
        publisher(reg.host, "bearer/other:v1", index).publish(make_image("bearer-anon"))


def test_5xx_and_resets_are_retried(registry, proxy_to, index):
    proxy = proxy_to(registry)
    image = make_image("flaky", layer_sizes=(80_000,))
    faults = {"503": 2, "cut": 1}

    def inject(method, path, length):
        if method == "HEAD" and faults["503"]:
            faults["503"] -= 1
            return 503
        if method == "PUT" and "/blobs/uploads/" in path and length and faults["cut"]:
            faults["cut"] -= 1
            return "cut"
        return None

    proxy.inject = inject
    pub = publisher(proxy.host, "flaky/app:v1", index)
    pub.publish(image)
    assert faults == {"503": 0, "cut": 0}
    assert pub.stats.retries >= 3
    assert stored_digest(registry.url, "flaky/app", "v1") == image.digest


def test_retries_are_bounded(registry, proxy_to, index):
    proxy = proxy_to(registry)
    proxy.inject = lambda method, path, length: 503 if method == "HEAD" else None
    t0 = time.monotonic()
    with pytest.raises(errors.RegistryError, match="503"):
        publisher(proxy.host, "bounded/app:v1", index, retries=3).publish(make_image("bounded"))
    assert time.monotonic() - t0 < 30
    assert proxy.count("HEAD") <= 4 * 4             # (retries + 1) per HEAD, (retries + 1) blob attempts


def test_cut_upload_then_rerun_completes(registry, proxy_to, index):
    """The link drops on every upload of the second layer: the push fails; run again on a good link,
    it completes, and the first layer (which made it) is not sent again."""
    proxy = proxy_to(registry)
    image = make_image("resume", layer_sizes=(120_000, 120_000))
    second = image.layers[1]
    proxy.inject = lambda m, p, n: "cut" if m == "PUT" and n == second.size else None
    with pytest.raises(errors.RegistryUnreachable, match="kept breaking"):
        publisher(proxy.host, "resume/app:v1", index, retries=2).publish(image)
    assert registry.has_blob("resume/app", image.layers[0].digest)
    assert not registry.has_blob("resume/app", second.digest)
    assert requests.get(f"{registry.url}/v2/resume/app/manifests/v1", timeout=5).status_code == 404

    proxy.inject = None
    proxy.reset()
    pub = publisher(proxy.host, "resume/app:v1", index)
    pub.publish(image)
    assert pub.stats.existing == 1 and pub.stats.uploaded == 2        # layer 1 skipped; layer 2 + config
    assert not any(p.endswith(image.layers[0].digest) for m, p, _ in proxy.log if m == "PUT")
    assert stored_digest(registry.url, "resume/app", "v1") == image.digest


# --- the command line --------------------------------------------------------------------------------
def test_cli_push_killed_midway_then_rerun(registry, proxy_to, tmp_path, clean_env):
    """`forge push` is killed (SIGKILL) while a layer upload is in flight; run again, it completes."""
    proxy = proxy_to(registry)
    image = make_image("killed", layer_sizes=(150_000, 150_000))
    out = write_oci_layout(image, tmp_path / "out")
    second = image.layers[1]
    proxy.inject = lambda m, p, n: "hold" if m == "PUT" and n == second.size else None
    proc = subprocess.Popen([*FORGE, "push", str(out), f"{proxy.host}/killed/app:v1", "--insecure"],
                            env=clean_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proxy.held.wait(60), "the push never reached the second layer"
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    proxy.release.set()
    assert registry.has_blob("killed/app", image.layers[0].digest)
    assert not registry.has_blob("killed/app", second.digest)

    proxy.inject = None
    proxy.reset()
    done = run_forge("push", str(out), f"{proxy.host}/killed/app:v1", "--insecure", env=clean_env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{proxy.host}/killed/app:v1@{image.digest}"
    assert len(proxy.uploads()) == 4                 # layer 2 and config (POST + PUT each); layer 1 skipped
    assert stored_digest(registry.url, "killed/app", "v1") == image.digest


def test_cli_push_with_env_credentials_and_wrong_password(registry_htpasswd, tmp_path, clean_env):
    image = make_image("cli-auth")
    out = write_oci_layout(image, tmp_path / "out")
    ref = f"{registry_htpasswd.host}/cli/app:v1"
    env = {**clean_env, "FORGE_REGISTRY_USER": USER, "FORGE_REGISTRY_PASSWORD": PASSWORD}
    ok = run_forge("push", str(out), ref, "--insecure", env=env)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == f"{ref}@{image.digest}"

    bad = run_forge("push", str(out), ref, "--insecure", env={**env, "FORGE_REGISTRY_PASSWORD": "nope"})
    assert bad.returncode == errors.RegistryAuthFailed.exit_code == 41
    assert "registry authentication failed" in bad.stderr
    assert f"as '{USER}'" in bad.stderr and "FORGE_REGISTRY_USER" in bad.stderr
    assert "Traceback" not in bad.stderr

    # the same credentials from ~/.docker/config.json (base64 `auths`)
    cfg = Path(clean_env["DOCKER_CONFIG"])
    cfg.mkdir(exist_ok=True)
    (cfg / "config.json").write_text(json.dumps(
        {"auths": {registry_htpasswd.host: {"auth": base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}}}))
    ok = run_forge("push", str(out), f"{registry_htpasswd.host}/cli/app:v2", "--insecure", env=clean_env)
    assert ok.returncode == 0, ok.stderr


def test_cli_registry_down(tmp_path, clean_env):
    out = write_oci_layout(make_image("down"), tmp_path / "out")
    t0 = time.monotonic()
    r = run_forge("push", str(out), f"127.0.0.1:{free_port()}/down/app:v1", "--insecure", env=clean_env)
    assert r.returncode == errors.RegistryUnreachable.exit_code == 40
    assert "registry unreachable" in r.stderr and "Connection refused" in r.stderr
    assert time.monotonic() - t0 < 30                # bounded backoff


def test_cli_insecure_only_for_loopback(tmp_path, clean_env):
    out = write_oci_layout(make_image("insecure"), tmp_path / "out")
    r = run_forge("push", str(out), "registry.example.com/team/app:v1", "--insecure", env=clean_env)
    assert r.returncode == errors.InsecureRegistryRefused.exit_code == 46
    assert "only for a registry on this machine" in r.stderr


def test_cli_plain_http_registry_needs_insecure(registry, tmp_path, clean_env):
    out = write_oci_layout(make_image("tls"), tmp_path / "out")
    r = run_forge("push", str(out), f"{registry.host}/tls/app:v1", env=clean_env)
    assert r.returncode == errors.RegistryUnreachable.exit_code
    assert "--insecure" in r.stderr


def test_cli_bad_reference(tmp_path, clean_env):
    out = write_oci_layout(make_image("badref"), tmp_path / "out")
    r = run_forge("push", str(out), "https://127.0.0.1:5000/app", "--insecure", env=clean_env)
    assert r.returncode == errors.InvalidReference.exit_code


def test_cli_pushes_every_build_output_shape(registry, tmp_path, clean_env):
    """A `forge build` output directory, a docker-archive tarball and an OCI layout all push, to the
    same digest (what forge.image.read.load_image reads)."""
    from forge.publish import DockerArchivePublisher

    image = make_image("shapes", layer_sizes=(30_000,))
    build_out = tmp_path / "dist" / "shapes"
    write_oci_layout(image, build_out / "image")
    (build_out / "forge-build.json").write_text(json.dumps({"name": "shapes", "digest": image.digest}))
    archive = tmp_path / "shapes.tar"
    DockerArchivePublisher(archive, "shapes:v1").publish(image)
    for i, out in enumerate((build_out, archive, build_out / "image")):
        ref = f"{registry.host}/shapes/app:v{i}"
        r = run_forge("push", str(out), ref, "--insecure", env=clean_env)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == f"{ref}@{image.digest}"
        assert stored_digest(registry.url, "shapes/app", f"v{i}") == image.digest
    r = run_forge("push", str(tmp_path / "missing"), f"{registry.host}/shapes/app:x", "--insecure", env=clean_env)
    assert r.returncode == errors.InvalidImage.exit_code
