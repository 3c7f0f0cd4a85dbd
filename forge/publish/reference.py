"""Image references (`[host[:port]/]path[:tag][@sha256:...]`), parsed the way docker parses them."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace

from forge.errors import InvalidReference

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
_HOST_RE = re.compile(r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
                      r"|\[[0-9a-fA-F:.]+\])(?::[0-9]{1,5})?$")


@dataclass(frozen=True)
class Reference:
    registry: str          # host[:port] as written; "docker.io" for Docker Hub
    repository: str        # e.g. "library/alpine", "team/app"
    tag: str | None = None
    digest: str | None = None

    @property
    def api_host(self) -> str:
        """Where the distribution API lives (Docker Hub's API host differs from its name)."""
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def hostname(self) -> str:
        host = self.registry
        if host.startswith("["):
            return host[1:host.index("]")]
        return host.rsplit(":", 1)[0] if ":" in host else host

    def is_loopback(self) -> bool:
        name = self.hostname.lower()
        if name == "localhost" or name.endswith(".localhost"):
            return True
        try:
            return ipaddress.ip_address(name).is_loopback
        except ValueError:
            return False

    def with_tag(self, tag: str | None) -> "Reference":
        return replace(self, tag=tag)

    def with_digest(self, digest: str | None) -> "Reference":
        return replace(self, digest=digest)

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    def __str__(self) -> str:
        s = self.name
        if self.tag:
            s += f":{self.tag}"
        if self.digest:
            s += f"@{self.digest}"
        return s


def parse_reference(text: str, *, default_tag: str | None = "latest") -> Reference:
    """Parse an image reference; a reference with neither tag nor digest gets `default_tag`."""
    original = text
    if "://" in text:
        raise InvalidReference(f"{original!r} has a URL scheme; write an image reference such as "
                               "`registry.example.com/team/app:v1` (no http:// or https://).")
    digest = None
    if "@" in text:
        text, digest = text.split("@", 1)
        if not _DIGEST_RE.match(digest):
            raise InvalidReference(f"{original!r}: {digest!r} is not a sha256 digest "
                                   "(`sha256:` followed by 64 lowercase hex digits).")
    tag = None
    slash, colon = text.rfind("/"), text.rfind(":")
    if colon > slash:
        text, tag = text[:colon], text[colon + 1:]
        if not _TAG_RE.match(tag):
            raise InvalidReference(f"{original!r}: {tag!r} is not a valid tag (letters, digits, `_`, `.`, `-`; "
                                   "at most 128 characters, not starting with `.` or `-`).")
    first, _, rest = text.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost" or first.startswith("[")
                 or first != first.lower()):
        registry, path = first, rest
        if not _HOST_RE.match(registry):
            raise InvalidReference(f"{original!r}: {registry!r} is not a valid registry host[:port].")
    else:
        registry, path = DOCKER_HUB, text
        if "/" not in path:
            path = f"library/{path}"
    if registry in ("index.docker.io", "registry-1.docker.io"):
        registry = DOCKER_HUB
    if not path or not _PATH_RE.match(path):
        raise InvalidReference(f"{original!r}: repository {path!r} is not valid; repository names are "
                               "lowercase letters, digits and separators (`.`, `_`, `__`, `-`), split by `/`.")
    if len(f"{registry}/{path}") > 255:
        raise InvalidReference(f"{original!r}: the repository name is longer than 255 characters.")
    if tag is None and digest is None:
        tag = default_tag
    return Reference(registry=registry, repository=path, tag=tag, digest=digest)
