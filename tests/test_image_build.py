"""forge.image.build: the layers, the config, and reproducibility (no Docker needed)."""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import zlib
import zoneinfo
from pathlib import Path

import pytest
import zstandard

from forge import errors
from forge.image.build import ImageSpec, build_image, epoch_from_env
from forge.image.layer import Entry, decompress, layer_file, layer_members, tar_bytes
from forge.image.model import OCI_CONFIG, OCI_LAYER_GZIP, OCI_LAYER_ZSTD, OCI_MANIFEST, sha256_digest
from forge.image.rootfs import base_lock

LABELS = {"org.opencontainers.image.title": "floor", "org.opencontainers.image.version": "1.0.0",
          "org.opencontainers.image.source": "https://example.invalid/forge"}


def config_of(image) -> dict:
    return json.loads(image.config.data)


def copy_app(src: Path, dst: Path) -> Path:
    """A copy of an app dir with different mtimes, owner-independent: the image must not notice."""
    shutil.copytree(src, dst)
    for p in dst.rglob("*"):
        os.utime(p, (1_234_567_890, 1_234_567_890))
    return dst


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_same_spec_twice_same_digest(floor_app, tmp_path, compression):
    spec = ImageSpec(app_dir=floor_app, labels=LABELS, compression=compression, epoch=1_700_000_000)
    a, b = build_image(spec), build_image(spec)
    assert a.digest == b.digest
    assert a.manifest.data == b.manifest.data and a.config.data == b.config.data
    assert [layer.data for layer in a.layers] == [layer.data for layer in b.layers]
    # the same content elsewhere, with other mtimes, gives the same bytes too
    moved = copy_app(floor_app, tmp_path / "elsewhere")
    c = build_image(ImageSpec(app_dir=moved, labels=LABELS, compression=compression, epoch=1_700_000_000))
    assert c.digest == a.digest


def test_same_spec_in_another_process_same_digest(floor_app):
    """No hidden state (caches, dict order, time): a fresh interpreter computes the same digest."""
    import subprocess
    import sys

    code = ("from forge.image.build import ImageSpec, build_image;"
            f"print(build_image(ImageSpec(app_dir={str(floor_app)!r}, compression='zstd')).digest)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONHASHSEED": "123"}).stdout.strip()
    assert out == build_image(ImageSpec(app_dir=floor_app, compression="zstd")).digest


def test_base_layer_is_shared_and_app_layer_carries_the_epoch(floor_app, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "app").write_bytes(b"#!not really\n")
    a = build_image(ImageSpec(app_dir=floor_app, epoch=0))
    b = build_image(ImageSpec(app_dir=floor_app, epoch=1_700_000_000, labels=LABELS))
    c = build_image(ImageSpec(app_dir=other, epoch=5))
    assert a.layers[0].data == b.layers[0].data == c.layers[0].data   # base: same bytes everywhere
    assert a.layers[1].digest != b.layers[1].digest                    # app: mtimes follow the epoch
    assert {m.mtime for m in layer_members(b.layers[1])} == {1_700_000_000}
    assert {m.mtime for m in layer_members(b.layers[0])} == {0}
    assert a.digest != b.digest
    assert config_of(b)["created"] == "2023-11-14T22:13:20Z"
    assert config_of(a)["created"] == "1970-01-01T00:00:00Z"


def test_config_fields(floor_app):
    spec = ImageSpec(app_dir=floor_app, labels=LABELS, env={"LOG_LEVEL": "info"}, epoch=86400)
    image = build_image(spec)
    cfg = config_of(image)
    assert cfg["architecture"] == "amd64" and cfg["os"] == "linux"
    assert cfg["created"] == "1970-01-02T00:00:00Z"
    c = cfg["config"]
    assert c["Entrypoint"] == ["/app/app"]
    assert c["User"] == "65532:65532"
    assert c["ExposedPorts"] == {"8080/tcp": {}}
    assert "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt" in c["Env"]
    assert "PORT=8080" in c["Env"] and "LOG_LEVEL=info" in c["Env"]
    assert c["Labels"] == LABELS
    assert cfg["rootfs"] == {"type": "layers", "diff_ids": [layer.diff_id for layer in image.layers]}
    assert len(cfg["history"]) == len(image.layers)
    manifest = json.loads(image.manifest.data)
    assert manifest["schemaVersion"] == 2 and manifest["mediaType"] == OCI_MANIFEST
    assert manifest["config"] == {"mediaType": OCI_CONFIG, "digest": image.config.digest, "size": image.config.size}
    assert [d["digest"] for d in manifest["layers"]] == [layer.digest for layer in image.layers]
    assert all(d["mediaType"] == OCI_LAYER_GZIP for d in manifest["layers"])
    for layer in image.layers:
        tar = decompress(layer.data)
        assert layer.diff_id == sha256_digest(tar) and layer.uncompressed_size == len(tar)


def test_port_and_user_are_configurable(floor_app):
    c = config_of(build_image(ImageSpec(app_dir=floor_app, port=9000, user="1000:1000")))["config"]
    assert c["ExposedPorts"] == {"9000/tcp": {}} and "PORT=9000" in c["Env"] and c["User"] == "1000:1000"


def test_base_layer_content(floor_app):
    base = build_image(ImageSpec(app_dir=floor_app)).layers[0]
    members = {m.name.rstrip("/"): m for m in layer_members(base)}
    assert list(members) == ["etc", "etc/group", "etc/passwd", "etc/ssl", "etc/ssl/certs",
                             "etc/ssl/certs/ca-certificates.crt", "home", "home/nonroot", "tmp"]
    tmp = members["tmp"]
    assert tmp.isdir() and tmp.mode == 0o1777 and (tmp.uid, tmp.gid) == (0, 0)
    home = members["home/nonroot"]
    assert home.isdir() and (home.uid, home.gid) == (65532, 65532)
    for name, m in members.items():
        assert m.uname == "" and m.gname == ""
        if name != "home/nonroot":
            assert (m.uid, m.gid) == (0, 0), name
        if m.isdir() and name != "tmp":
            assert m.mode == 0o755, name
        if m.isfile():
            assert m.mode == 0o644, name
    passwd = layer_file(base, "etc/passwd").decode()
    assert "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin" in passwd.splitlines()
    assert passwd.splitlines()[0].startswith("root:x:0:0:")
    assert "nonroot:x:65532:" in layer_file(base, "etc/group").decode().splitlines()
    ca = layer_file(base, "etc/ssl/certs/ca-certificates.crt")
    assert sha256_digest(ca) == "sha256:" + base_lock()["ca-certificates"]["sha256"]
    assert ca.count(b"-----BEGIN CERTIFICATE-----") > 100


def test_app_layer_modes_and_order(tmp_path):
    app = tmp_path / "app_dir"
    (app / "lib" / "sub").mkdir(parents=True)
    (app / "app").write_bytes(b"\x7fELF fake")
    os.chmod(app / "app", 0o600)                  # the entrypoint becomes 0755 anyway
    (app / "lib" / "data.txt").write_text("x")
    os.chmod(app / "lib" / "data.txt", 0o666)     # group/world-writable: normalised to 0644
    (app / "lib" / "tool").write_text("#!/bin/sh\n")
    os.chmod(app / "lib" / "tool", 0o700)         # any x bit: 0755
    (app / "lib" / "sub" / "z").write_text("z")
    os.symlink("data.txt", app / "lib" / "alias")
    os.chmod(app / "lib", 0o700)
    layer = build_image(ImageSpec(app_dir=app)).layers[-1]
    members = layer_members(layer)
    got = [(m.name, oct(m.mode), m.type) for m in members]
    assert got == [
        ("app", "0o755", tarfile.DIRTYPE),
        ("app/app", "0o755", tarfile.REGTYPE),
        ("app/lib", "0o755", tarfile.DIRTYPE),
        ("app/lib/alias", "0o777", tarfile.SYMTYPE),
        ("app/lib/data.txt", "0o644", tarfile.REGTYPE),
        ("app/lib/sub", "0o755", tarfile.DIRTYPE),
        ("app/lib/sub/z", "0o644", tarfile.REGTYPE),
        ("app/lib/tool", "0o755", tarfile.REGTYPE),
    ]
    assert all((m.uid, m.gid, m.uname, m.gname) == (0, 0, "", "") for m in members)
    assert members[3].linkname == "data.txt"


def test_tar_format_is_pinned():
    """Headers are ustar/pax with fixed fields; a long path gets a pax record, deterministically."""
    long = "app/" + "d" * 120 + "/f"
    tar = tar_bytes([Entry("app/x", "file", 0o644, b"hi"), Entry(long, "file", 0o644, b"")], mtime=7)
    assert tar == tar_bytes([Entry(long, "file", 0o644, b""), Entry("app/x", "file", 0o644, b"hi")], mtime=7)
    assert len(tar) % 10240 == 0
    with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
        names = [m.name for m in tf.getmembers()]
    assert names[0] == "app" and long in names       # parents first, explicitly
    assert tar[:100].rstrip(b"\0") == b"app/"       # a directory's stored name ends in /
    assert tar[257:265] == b"ustar\x0000"             # POSIX ustar magic and version


def test_gzip_header_is_fixed(floor_app):
    layer = build_image(ImageSpec(app_dir=floor_app, epoch=1_700_000_000)).layers[-1]
    assert layer.media_type == OCI_LAYER_GZIP
    # magic, deflate, no flags (so no file name), mtime 0, XFL 2 (level 9), OS 255
    assert layer.data[:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    assert zlib.decompress(layer.data, wbits=31) == decompress(layer.data)


def test_zstd_layers(floor_app):
    image = build_image(ImageSpec(app_dir=floor_app, compression="zstd"))
    for layer in image.layers:
        assert layer.media_type == OCI_LAYER_ZSTD
        assert layer.data[:4] == b"\x28\xb5\x2f\xfd"
        params = zstandard.get_frame_parameters(layer.data)
        assert params.content_size == layer.uncompressed_size and params.has_checksum
    gz = build_image(ImageSpec(app_dir=floor_app))
    assert [layer.diff_id for layer in image.layers] == [layer.diff_id for layer in gz.layers]


def test_zoneinfo_only_when_asked(floor_app, tmp_path):
    plain = build_image(ImageSpec(app_dir=floor_app))
    tz = build_image(ImageSpec(app_dir=floor_app, include_zoneinfo=True))
    assert len(plain.layers) == 2 and len(tz.layers) == 3
    assert tz.layers[0].data == plain.layers[0].data and tz.layers[2].data == plain.layers[1].data
    assert not any(m.name.startswith("usr/") for layer in plain.layers for m in layer_members(layer))
    members = layer_members(tz.layers[1])
    names = {m.name for m in members}
    assert {"usr", "usr/share", "usr/share/zoneinfo", "usr/share/zoneinfo/Europe/London",
            "usr/share/zoneinfo/zone1970.tab", "usr/share/zoneinfo/UTC"} <= names
    assert not any(n.endswith((".py", ".pyc")) for n in names)
    assert any(m.islnk() for m in members)                       # aliases are hard links
    # Extract it and let Python's zoneinfo read it as a system tz database.
    with tarfile.open(fileobj=io.BytesIO(decompress(tz.layers[1].data))) as tf:
        tf.extractall(tmp_path / "root", filter="tar")
    root = tmp_path / "root" / "usr" / "share" / "zoneinfo"
    assert (root / "Europe" / "London").read_bytes()[:4] == b"TZif"
    zoneinfo.reset_tzpath([str(root)])
    try:
        from datetime import datetime
        zone = zoneinfo.ZoneInfo.no_cache("Europe/Belfast")  # an alias, stored as a hard link
        assert datetime(2024, 7, 1, 12, tzinfo=zone).utcoffset().total_seconds() == 3600
    finally:
        zoneinfo.reset_tzpath()


@pytest.mark.parametrize("kwargs, fragment", [
    ({"compression": "brotli"}, "compression"),
    ({"entrypoint": ("app",)}, "absolute path"),
    ({"entrypoint": ()}, "entrypoint"),
    ({"port": 0}, "port"),
    ({"epoch": -1}, "epoch"),
    ({"env": {"PORT": "9"}}, "PORT"),
    ({"env": {"BAD NAME": "x"}}, "environment"),
    ({"user": "root;rm"}, "user"),
])
def test_spec_refuses_bad_values(floor_app, kwargs, fragment):
    with pytest.raises(errors.ConfigError, match=fragment):
        ImageSpec(app_dir=floor_app, **kwargs)


def test_missing_app_dir_and_entrypoint(tmp_path):
    with pytest.raises(errors.ConfigError, match="does not exist"):
        build_image(ImageSpec(app_dir=tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(errors.ConfigError, match="entrypoint /app/app is not in the app directory"):
        build_image(ImageSpec(app_dir=tmp_path / "empty"))


def test_special_files_are_refused(tmp_path):
    app = tmp_path / "a"
    app.mkdir()
    (app / "app").write_bytes(b"x")
    os.mkfifo(app / "fifo")
    with pytest.raises(errors.ConfigError, match="FIFO"):
        build_image(ImageSpec(app_dir=app))


def test_epoch_from_env(monkeypatch):
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    assert epoch_from_env() == 0
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert epoch_from_env() == 1_700_000_000
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(errors.ConfigError, match="SOURCE_DATE_EPOCH"):
        epoch_from_env()
