"""`forge push` and `forge deploy`'s pull: the registry side of forge.publish, in one import.

    forge.publish.client   RegistryClient: the distribution API over HTTP (transport)
    forge.publish.retry    which answers are retried, and the backoff
    forge.publish.token    answering a 401 (Basic, Bearer token); forge.publish.auth finds credentials
    forge.publish.push     RegistryPublisher, BlobIndex (cross-repository mounts), image_path_of
    forge.publish.pull     pull_image
"""

from forge.image.layer import uncompressed_length
from forge.publish.client import PushStats, RegistryClient
from forge.publish.pull import pull_image
from forge.publish.push import DEFAULT_CHUNK_SIZE, BlobIndex, RegistryPublisher, image_path_of
from forge.publish.retry import MAX_BACKOFF, RETRY_STATUSES

__all__ = ["BlobIndex", "DEFAULT_CHUNK_SIZE", "MAX_BACKOFF", "PushStats", "RETRY_STATUSES", "RegistryClient",
           "RegistryPublisher", "image_path_of", "pull_image", "uncompressed_length"]
