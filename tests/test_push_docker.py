"""End to end: a real forge image (the static C floor server in a FROM scratch image, written by the
image writer) pushed with `forge push` to a loopback registry, pulled by the Docker engine, and run."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

import pytest
import requests

from forge.image.build import ImageSpec, build_image
from forge.image.floor import build_floor
from forge.image.read import load_image
from tests.plugins.registry import free_port, write_oci_layout

pytestmark = pytest.mark.docker

try:  # the image writer's engine fixture (starts dockerd), when this checkout has it
    from tests.plugins.docker_engine import docker_client  # noqa: F401
except ImportError:
    import docker

    @pytest.fixture(scope="session")
    def docker_client():
        try:
            client = docker.from_env()
            client.ping()
        except Exception as exc:  # noqa: BLE001 - any failure means no engine
            pytest.fail(f"no Docker engine answers ({exc}); run scripts/start-dockerd.sh")
        return client


@pytest.fixture(scope="module")
def floor_layout(tmp_path_factory):
    app_dir = tmp_path_factory.mktemp("floor-app")
    build_floor(app_dir)
    image = build_image(ImageSpec(app_dir=app_dir))
    return write_oci_layout(image, tmp_path_factory.mktemp("floor-image") / "image"), image


def test_push_pull_run(registry, docker_client, floor_layout, tmp_path):
    layout, image = floor_layout
    assert load_image(layout).digest == image.digest
    repo = f"floor/{uuid.uuid4().hex[:8]}"
    ref = f"{registry.host}/{repo}:v1"
    env = {**os.environ, "DOCKER_CONFIG": str(tmp_path), "FORGE_CACHE_DIR": str(tmp_path / "cache")}
    t0 = time.monotonic()
    push = subprocess.run([sys.executable, "-m", "forge", "push", str(layout), ref, "--insecure"], env=env,
                          capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - t0
    assert push.returncode == 0, push.stderr
    assert push.stdout.strip() == f"{ref}@{image.digest}"
    print(f"\nforge push of a {image.compressed_size / 1024:.0f} KiB floor image: {elapsed:.2f}s "
          f"(process start included)\n{push.stderr}")

    pulled = docker_client.images.pull(f"{registry.host}/{repo}", tag="v1")
    try:
        assert f"{registry.host}/{repo}@{image.digest}" in pulled.attrs["RepoDigests"]
        assert pulled.attrs["Architecture"] == "amd64" and pulled.attrs["Os"] == "linux"
        port = free_port()
        container = docker_client.containers.run(pulled.id, detach=True, read_only=True,
                                                 ports={"8080/tcp": ("127.0.0.1", port)})
        try:
            body, deadline = None, time.monotonic() + 20
            while time.monotonic() < deadline:
                try:
                    r = requests.get(f"http://127.0.0.1:{port}/", timeout=2)
                    body = (r.status_code, r.text)
                    break
                except requests.ConnectionError:
                    time.sleep(0.1)
            assert body == (200, "ok\n"), container.logs().decode()
        finally:
            container.remove(force=True)
    finally:
        docker_client.images.remove(pulled.id, force=True)

    again = subprocess.run([sys.executable, "-m", "forge", "push", str(layout), ref, "--insecure"], env=env,
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert "0 blob(s) uploaded" in again.stderr and f"{len(image.layers) + 1} already there" in again.stderr
