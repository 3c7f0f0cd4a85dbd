"""The base rootfs sources in images/: the CA bundle pin, passwd/group, and the static C floor."""

from __future__ import annotations

import hashlib
import json
from importlib import metadata
from pathlib import Path

import pytest

from forge import errors
from forge.elfcheck import static_problems
from forge.image import rootfs
from forge.image.floor import build_floor
from forge.image.rootfs import base_lock, images_dir


def test_ca_bundle_matches_its_pin():
    pin = base_lock()["ca-certificates"]
    data = (images_dir() / pin["path"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == pin["sha256"]
    assert pin["version"].count(".") == 2 and "certifi" in pin["source"]
    assert data.startswith(b"\n# Issuer:") or data.startswith(b"# Issuer:")
    assert rootfs.ca_bundle() == data


def test_ca_bundle_is_the_pinned_certifi_releases_cacert():
    """The bundle is byte-identical to cacert.pem in the pinned certifi wheel from PyPI (taken
    from the installed certifi when that is the pinned version)."""
    pin = base_lock()["ca-certificates"]
    if metadata.version("certifi") == pin["version"]:
        import certifi
        pem = Path(certifi.where()).read_bytes()
    else:
        pem = rootfs.certifi_cacert(pin["version"])
    assert pem == (images_dir() / pin["path"]).read_bytes()


def test_tampered_ca_bundle_is_refused(tmp_path, monkeypatch):
    fake = tmp_path / "images"
    (fake / "base" / "etc" / "ssl" / "certs").mkdir(parents=True)
    lock = base_lock()
    (fake / "base.lock.json").write_text(json.dumps(lock))
    (fake / lock["ca-certificates"]["path"]).write_bytes(b"not the pinned bundle")
    monkeypatch.setenv("FORGE_IMAGES_DIR", str(fake))
    with pytest.raises(errors.SourceChecksumMismatch, match="pin-ca-bundle"):
        rootfs.ca_bundle()


def test_passwd_and_group():
    etc = images_dir() / "base" / "etc"
    passwd = [line.split(":") for line in (etc / "passwd").read_text().splitlines()]
    group = [line.split(":") for line in (etc / "group").read_text().splitlines()]
    assert all(len(f) == 7 for f in passwd) and all(len(f) == 4 for f in group)
    users = {f[0]: f for f in passwd}
    assert users["root"][2:4] == ["0", "0"]
    assert users["nonroot"][2:4] == ["65532", "65532"] and users["nonroot"][5] == "/home/nonroot"
    assert {f[0]: f[2] for f in group} == {"root": "0", "nobody": "65534", "nonroot": "65532"}


def test_floor_is_static_small_and_reproducible(tmp_path):
    a = build_floor(tmp_path / "a")
    b = build_floor(tmp_path / "b")
    assert a.name == "app" and a.stat().st_mode & 0o777 == 0o755
    assert static_problems(a) == []
    assert a.read_bytes() == b.read_bytes()
    assert a.stat().st_size < 64 * 1024


def test_floor_answers_http(tmp_path):
    """The floor binary on the host: HTTP 200 on $PORT, Connection: close."""
    import os
    import socket
    import subprocess
    import time

    import requests

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([str(build_floor(tmp_path))], env={**os.environ, "PORT": str(port)})
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                r = requests.get(f"http://127.0.0.1:{port}/anything", timeout=2)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline and proc.poll() is None, "floor did not start"
                time.sleep(0.05)
        assert r.status_code == 200 and r.text == "ok\n" and r.headers["Connection"] == "close"
        r = requests.post(f"http://127.0.0.1:{port}/", data=b"x" * 100_000, timeout=5)
        assert r.status_code == 200
    finally:
        proc.terminate()
        assert proc.wait(timeout=5) == 0  # SIGTERM: clean exit 0


def test_floor_without_compiler(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("FORGE_MUSL_GCC", raising=False)
    with pytest.raises(errors.CompilerNotFound, match="musl-tools"):
        build_floor(tmp_path / "out")
