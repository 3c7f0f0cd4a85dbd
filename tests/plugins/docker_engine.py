"""The Docker engine fixture, and helpers to run forge images in it.

`docker_client` starts dockerd once per machine with scripts/start-dockerd.sh (a no-op when an engine
already answers) and returns docker.from_env(). Tests that need it FAIL, never skip, when no engine
can be started: a green run must mean the images really ran. The engine is left running afterwards
(other sessions on the machine may share it).

Nothing can be pulled here: images come from `docker load`, `docker import` or FROM scratch builds.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
START = REPO / "scripts" / "start-dockerd.sh"


@pytest.fixture(scope="session")
def docker_client():
    import docker
    from docker.errors import DockerException

    try:
        proc = subprocess.run(["bash", str(START)], capture_output=True, text=True, timeout=240)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{START} did not finish within 240 s; see /var/log/forge-dockerd.log", pytrace=False)
    if proc.returncode != 0:
        pytest.fail(
            f"these tests need a running Docker engine, and {START} could not start one (exit "
            f"{proc.returncode}):\n{proc.stdout}{proc.stderr}\nInstall docker.io (scripts/bootstrap.sh --test), "
            "run the tests as root, or point DOCKER_HOST at a working engine.", pytrace=False)
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except DockerException as exc:
        pytest.fail(f"{START} reported an engine, but the Docker SDK cannot reach it: {exc}", pytrace=False)
    yield client
    client.close()


@pytest.fixture(scope="session")
def floor_app(tmp_path_factory) -> Path:
    """A directory holding the static C floor as `app` (an app_dir for ImageSpec)."""
    from forge.image.floor import build_floor

    out = tmp_path_factory.mktemp("floor-app")
    build_floor(out)
    return out


def unique_tag(name: str = "floor") -> str:
    return f"forge-test/{name}:{uuid.uuid4().hex[:12]}"


@contextlib.contextmanager
def loaded_tag(client, tag: str) -> Iterator[str]:
    """Removes image `tag` from the engine when the block ends (whatever loaded it)."""
    try:
        yield tag
    finally:
        with contextlib.suppress(Exception):
            client.images.remove(tag, force=True)


@contextlib.contextmanager
def running(client, image: str, **kwargs) -> Iterator:
    """A detached container, force-removed when the block ends."""
    container = client.containers.run(image, detach=True, **kwargs)
    try:
        yield container
    finally:
        with contextlib.suppress(Exception):
            container.remove(force=True)


def host_port(container, port: str = "8080/tcp", timeout: float = 10) -> int:
    deadline = time.monotonic() + timeout
    while True:
        container.reload()
        bindings = (container.attrs["NetworkSettings"]["Ports"] or {}).get(port)
        if bindings:
            return int(bindings[0]["HostPort"])
        if time.monotonic() > deadline:
            raise AssertionError(f"{port} was never published; container state: {container.attrs['State']}")
        time.sleep(0.1)


def wait_http(container, url: str, timeout: float = 20) -> requests.Response:
    """GET `url` until it answers (bounded); fails with the container's state and logs otherwise."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            return requests.get(url, timeout=2)
        except requests.RequestException as exc:
            last = exc
        container.reload()
        if container.status == "exited":
            break
        time.sleep(0.2)
    container.reload()
    raise AssertionError(f"{url} did not answer ({last}); container {container.status} "
                         f"{container.attrs['State']}; logs:\n{container.logs().decode(errors='replace')}")
