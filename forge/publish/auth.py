"""Registry credentials and the `WWW-Authenticate` challenge.

Where credentials come from, first match wins:
1. `FORGE_REGISTRY_USER` and `FORGE_REGISTRY_PASSWORD` (both or neither);
2. Docker's config (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`): the registry's
   `credHelpers` entry, else `credsStore`, both run as `docker-credential-<name> get`; then `auths`
   (`auth` = base64 "user:password", or `username`/`password`, or `identitytoken`).
No credentials means anonymous access.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from forge.errors import ConfigError, CredentialHelperFailed
from forge.publish.reference import DOCKER_HUB

DOCKER_HUB_CONFIG_KEY = "https://index.docker.io/v1/"
_HUB_ALIASES = {DOCKER_HUB, "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}


@dataclass(frozen=True)
class Credentials:
    username: str
    secret: str
    source: str                 # where they came from, for error messages
    identity_token: bool = False  # secret is an OAuth2 refresh token, not a password

    def basic_header(self) -> str:
        raw = f"{self.username}:{self.secret}".encode()
        return "Basic " + base64.b64encode(raw).decode()


def docker_config_path() -> Path:
    base = os.environ.get("DOCKER_CONFIG")
    return (Path(base) if base else Path.home() / ".docker") / "config.json"


def _normalize_key(key: str) -> str:
    """`https://host:5000/v1/` -> `host:5000` (config keys are written in many ways)."""
    key = re.sub(r"^[a-z]+://", "", key.strip())
    key = key.split("/", 1)[0]
    return DOCKER_HUB if key in _HUB_ALIASES else key


def _helper_server_url(registry: str) -> str:
    return DOCKER_HUB_CONFIG_KEY if registry == DOCKER_HUB else registry


def run_credential_helper(helper: str, registry: str) -> Credentials | None:
    exe = f"docker-credential-{helper}"
    path = shutil.which(exe)
    if path is None:
        raise CredentialHelperFailed(
            f"{docker_config_path()} names the credential helper {helper!r} for {registry}, but `{exe}` is not on "
            f"PATH. Install it, remove the entry from the config, or set FORGE_REGISTRY_USER and "
            f"FORGE_REGISTRY_PASSWORD.")
    try:
        proc = subprocess.run([path, "get"], input=_helper_server_url(registry), capture_output=True, text=True,
                              timeout=60)
    except subprocess.TimeoutExpired:
        raise CredentialHelperFailed(f"`{exe} get` did not answer within 60 s for {registry}.") from None
    output = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0:
        if "credentials not found" in output.lower():
            return None
        raise CredentialHelperFailed(f"`{exe} get` failed for {registry} (exit {proc.returncode}): "
                                     f"{output or 'no output'}")
    try:
        doc = json.loads(proc.stdout)
        username, secret = doc["Username"], doc["Secret"]
    except (ValueError, KeyError, TypeError):
        raise CredentialHelperFailed(f"`{exe} get` printed something that is not credentials JSON "
                                     f"(expected {{\"Username\": ..., \"Secret\": ...}}).") from None
    if username == "<token>":
        return Credentials("<token>", secret, exe, identity_token=True)
    return Credentials(username, secret, exe)


def _from_auths_entry(entry: dict, source: str) -> Credentials | None:
    if entry.get("identitytoken"):
        return Credentials(entry.get("username") or "<token>", entry["identitytoken"], source, identity_token=True)
    if entry.get("auth"):
        try:
            user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise ConfigError(f"{source}: the `auth` value is not base64 of `user:password`.") from None
        return Credentials(user, password, source)
    if entry.get("username") and entry.get("password") is not None:
        return Credentials(entry["username"], entry["password"], source)
    return None


def find_credentials(registry: str) -> Credentials | None:
    """Credentials for `registry` (host[:port], "docker.io" for Docker Hub), or None for anonymous."""
    user, password = os.environ.get("FORGE_REGISTRY_USER"), os.environ.get("FORGE_REGISTRY_PASSWORD")
    if user or password:
        if not (user and password):
            missing = "FORGE_REGISTRY_PASSWORD" if user else "FORGE_REGISTRY_USER"
            raise ConfigError(f"FORGE_REGISTRY_USER and FORGE_REGISTRY_PASSWORD go together; {missing} is not set.")
        return Credentials(user, password, "FORGE_REGISTRY_USER/FORGE_REGISTRY_PASSWORD")

    path = docker_config_path()
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read Docker's config {path}: {exc}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"Docker's config {path} is not a JSON object.")
    registry = _normalize_key(registry)

    helpers = {_normalize_key(k): v for k, v in (config.get("credHelpers") or {}).items()}
    if registry in helpers:
        return run_credential_helper(helpers[registry], registry)
    if config.get("credsStore"):
        creds = run_credential_helper(config["credsStore"], registry)
        if creds is not None:
            return creds
    for key, entry in (config.get("auths") or {}).items():
        if _normalize_key(key) == registry and isinstance(entry, dict):
            creds = _from_auths_entry(entry, f"{path} (auths[{key!r}])")
            if creds is not None:
                return creds
    return None


@dataclass(frozen=True)
class Challenge:
    scheme: str             # "basic" or "bearer", lower-cased
    params: dict[str, str]  # realm, service, scope, ...


_PARAM_RE = re.compile(r'([A-Za-z_][\w-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


def parse_challenge(header: str) -> Challenge | None:
    """Parse the first challenge of a `WWW-Authenticate` header (registries send one)."""
    header = header.strip()
    if not header:
        return None
    scheme, _, rest = header.partition(" ")
    params = {}
    for m in _PARAM_RE.finditer(rest):
        value = m.group(2) if m.group(2) is not None else m.group(3)
        params[m.group(1).lower()] = re.sub(r"\\(.)", r"\1", value)
    return Challenge(scheme.lower(), params)
