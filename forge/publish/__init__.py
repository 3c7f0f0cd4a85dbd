"""Publishers take an Image value and put it somewhere (ko's seam between build and publish).

    OciLayoutPublisher(path, ref_name=None)   an OCI image layout directory
    DockerArchivePublisher(path, tag)         a tarball for `docker load` (an OCI layout inside too)
    DaemonPublisher(tag)                      straight into the local Docker engine
    (forge.publish.registry, for `forge push`: a registry)

Each has publish(image) -> PublishResult(digest, location). File outputs are written beside the
target and renamed into place; a target forge did not write raises errors.OutputPathConflict.
"""

from forge.publish.base import PublishResult, Publisher
from forge.publish.daemon import DaemonPublisher
from forge.publish.docker_archive import DockerArchivePublisher
from forge.publish.oci_layout import OciLayoutPublisher

__all__ = ["Publisher", "PublishResult", "OciLayoutPublisher", "DockerArchivePublisher", "DaemonPublisher"]
