"""Forge images in a real Docker engine: `docker load` of the archive, DaemonPublisher, `docker run
--read-only --user 65532`, HTTP 200 from the static C floor on 8080. Fails (never skips) without an
engine: see tests/plugins/docker_engine.py."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from forge import errors
from forge.image.build import ImageSpec, build_image
from forge.image.read import load_image
from forge.publish import DaemonPublisher, DockerArchivePublisher, OciLayoutPublisher
from tests.plugins.docker_engine import host_port, loaded_tag, running, unique_tag, wait_http

pytestmark = [pytest.mark.docker, pytest.mark.timeout(300)]

LABELS = {"org.opencontainers.image.title": "floor", "org.opencontainers.image.version": "0.0.1"}


def run_and_get(client, tag: str):
    """docker run --read-only --user 65532 -p 127.0.0.1::8080 TAG; GET / on the published port."""
    with running(client, tag, read_only=True, user="65532", ports={"8080/tcp": ("127.0.0.1",)}) as c:
        port = host_port(c)
        r = wait_http(c, f"http://127.0.0.1:{port}/", timeout=20)
        c.reload()
        assert c.attrs["Config"]["User"] == "65532" and c.attrs["HostConfig"]["ReadonlyRootfs"] is True
        return r


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_docker_load_archive_and_run(docker_client, floor_app, tmp_path, compression):
    image = build_image(ImageSpec(app_dir=floor_app, compression=compression, labels=LABELS))
    tag = unique_tag(f"archive-{compression}")
    DockerArchivePublisher(tmp_path / "floor.tar", tag).publish(image)
    docker = shutil.which("docker")
    assert docker, "the docker CLI (docker.io) is missing"
    with loaded_tag(docker_client, tag):
        out = subprocess.run([docker, "load", "-i", str(tmp_path / "floor.tar")], capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert tag in out.stdout
        r = run_and_get(docker_client, tag)
        assert r.status_code == 200 and r.text == "ok\n"
        assert r.headers["Connection"] == "close"
        attrs = docker_client.images.get(tag).attrs
        cfg = attrs["Config"]
        assert cfg["Entrypoint"] == ["/app/app"] and cfg["User"] == "65532:65532"
        assert "8080/tcp" in cfg["ExposedPorts"]
        assert "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt" in cfg["Env"] and "PORT=8080" in cfg["Env"]
        assert cfg["Labels"] == LABELS
        assert attrs["Architecture"] == "amd64" and attrs["Os"] == "linux"
        assert attrs["Created"].startswith("1970-01-01T00:00:00")
        # the engine recomputed every diff_id from the layers and agrees with the config
        assert attrs["RootFS"]["Layers"] == [layer.diff_id for layer in image.layers]


def test_daemon_publisher_from_oci_layout(docker_client, floor_app, tmp_path):
    """build -> OCI layout -> load_image -> DaemonPublisher -> docker run."""
    built = build_image(ImageSpec(app_dir=floor_app, include_zoneinfo=True))
    OciLayoutPublisher(tmp_path / "layout", ref_name="v1").publish(built)
    image = load_image(tmp_path / "layout")
    assert image == built
    tag = unique_tag("daemon")
    with loaded_tag(docker_client, tag):
        result = DaemonPublisher(tag, client=docker_client).publish(image)
        assert result.digest == image.digest and result.location == f"docker-daemon:{tag}"
        assert result.image_id in (image.config.digest, image.digest)  # classic store / containerd store
        r = run_and_get(docker_client, tag)
        assert r.status_code == 200
        # publishing again is idempotent
        assert DaemonPublisher(tag, client=docker_client).publish(image).image_id == result.image_id


def test_port_env_and_zstd_through_daemon(docker_client, floor_app):
    """PORT moves the listener: a zstd image on port 9000 via DaemonPublisher."""
    image = build_image(ImageSpec(app_dir=floor_app, compression="zstd", port=9000))
    tag = unique_tag("port")
    with loaded_tag(docker_client, tag):
        DaemonPublisher(tag, client=docker_client).publish(image)
        with running(docker_client, tag, read_only=True, ports={"9000/tcp": ("127.0.0.1",)}) as c:
            r = wait_http(c, f"http://127.0.0.1:{host_port(c, '9000/tcp')}/", timeout=20)
            assert r.status_code == 200


def test_container_filesystem(docker_client, floor_app, tmp_path):
    """What the engine unpacked: /tmp 1777, nonroot's home, passwd, the app mode."""
    import io
    import tarfile

    image = build_image(ImageSpec(app_dir=floor_app))
    tag = unique_tag("fs")
    with loaded_tag(docker_client, tag):
        DaemonPublisher(tag, client=docker_client).publish(image)
        c = docker_client.containers.create(tag)
        try:
            data = b"".join(c.export())
        finally:
            c.remove(force=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        m = {x.name.rstrip("/"): x for x in tf.getmembers()}
        passwd = tf.extractfile("etc/passwd").read().decode()
    assert m["tmp"].mode & 0o7777 == 0o1777
    assert (m["home/nonroot"].uid, m["home/nonroot"].gid) == (65532, 65532)
    assert m["app/app"].mode & 0o777 == 0o755 and m["app/app"].uid == 0
    assert m["etc/ssl/certs/ca-certificates.crt"].size > 100_000
    assert "nonroot:x:65532:65532:" in passwd


def test_docker_save_reads_back(docker_client, floor_app, tmp_path):
    """What `docker save` writes (legacy archive on Docker < 25, OCI layout inside on newer) loads with
    load_image, carrying the same config and layer content as forge built."""
    image = build_image(ImageSpec(app_dir=floor_app, labels=LABELS))
    tag = unique_tag("save")
    with loaded_tag(docker_client, tag):
        DaemonPublisher(tag, client=docker_client).publish(image)
        with open(tmp_path / "saved.tar", "wb") as fh:
            for chunk in docker_client.images.get(tag).save(named=True):
                fh.write(chunk)
    back = load_image(tmp_path / "saved.tar")
    assert json.loads(back.config.data)["rootfs"] == json.loads(image.config.data)["rootfs"]
    assert json.loads(back.config.data)["config"]["Entrypoint"] == ["/app/app"]
    assert [layer.diff_id for layer in back.layers] == [layer.diff_id for layer in image.layers]
    # and forge can publish what it read
    OciLayoutPublisher(tmp_path / "again").publish(back)
    assert load_image(tmp_path / "again") == back


def test_unreachable_engine_is_a_clear_error(floor_app):
    import docker

    client = docker.DockerClient(base_url="unix:///nonexistent/docker.sock", version="1.41", timeout=5)
    with pytest.raises(errors.DockerUnavailable, match="start-dockerd.sh"):
        DaemonPublisher("x", client=client).publish(build_image(ImageSpec(app_dir=floor_app)))
