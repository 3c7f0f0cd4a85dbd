"""DaemonPublisher: load the image into the local Docker engine (the `docker` SDK's images.load)."""

from __future__ import annotations

from forge import errors
from forge.image.model import Image
from forge.publish.base import PublishResult
from forge.publish.docker_archive import archive_bytes, normalize_tag


def docker_client(client=None):
    """`client`, or docker.from_env() checked with a ping; errors.DockerUnavailable if no engine answers."""
    import docker
    import requests
    from docker.errors import DockerException

    try:
        client = client or docker.from_env()
        client.ping()
    except (DockerException, requests.RequestException) as exc:
        raise errors.DockerUnavailable(
            f"no Docker engine answers ({exc}). Start one (`systemctl start docker`, or as root in a "
            "sandbox scripts/start-dockerd.sh), or set DOCKER_HOST to an engine you can reach.") from exc
    return client


class DaemonPublisher:
    """Loads the image into the Docker engine as `tag` (the docker-archive DockerArchivePublisher writes,
    sent to the engine's /images/load). The engine then runs it with `docker run TAG`."""

    def __init__(self, tag: str, client=None):
        self.tag = normalize_tag(tag)[0]
        self._client = client

    def publish(self, image: Image) -> PublishResult:
        from docker.errors import APIError, ImageLoadError

        client = docker_client(self._client)
        data = archive_bytes(image, self.tag)
        try:
            client.images.load(data)
            loaded = client.images.get(self.tag)
        except (APIError, ImageLoadError) as exc:
            detail = getattr(exc, "explanation", None) or exc
            raise errors.DaemonRejectedImage(
                f"the Docker engine refused image {image.digest} as {self.tag}: {detail}. Check the "
                "engine's log; `forge build --docker-archive` writes the same archive to a file for "
                "`docker load -i` to try by hand.") from exc
        return PublishResult(digest=image.digest, location=f"docker-daemon:{self.tag}", image_id=loaded.id)
