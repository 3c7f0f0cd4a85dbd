"""wrangler 4.86.0 (the last release that runs on Node 20), @cloudflare/containers and TypeScript,
installed with npm once per machine into <forge cache>/npm/ and reused by every test run."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from forge.cache import cache_root, file_lock
from forge.deploy.cloudflare import CONTAINERS_VERSION, TYPESCRIPT_VERSION, WRANGLER_VERSION

PACKAGES = {"wrangler": WRANGLER_VERSION, "@cloudflare/containers": CONTAINERS_VERSION,
            "typescript": TYPESCRIPT_VERSION}


def npm_env() -> dict:
    # Offline, quiet, and never sending telemetry; wrangler must not try to log in.
    return {**os.environ, "WRANGLER_SEND_METRICS": "false", "CI": "true", "NO_UPDATE_NOTIFIER": "1",
            "npm_config_update_notifier": "false", "npm_config_fund": "false", "npm_config_audit": "false"}


class Wrangler:
    def __init__(self, root: Path):
        self.root = root

    @property
    def node_modules(self) -> Path:
        return self.root / "node_modules"

    @property
    def schema(self) -> dict:
        return json.loads((self.node_modules / "wrangler" / "config-schema.json").read_text())

    def link_into(self, project: Path) -> None:
        """Give a generated project these node_modules (as `npm install` would)."""
        link = project / "node_modules"
        if not link.exists():
            link.symlink_to(self.node_modules, target_is_directory=True)

    def run(self, project: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
        exe = self.node_modules / ".bin" / args[0]
        return subprocess.run([str(exe), *args[1:]], cwd=project, env=npm_env(), capture_output=True, text=True,
                              timeout=timeout)


def install() -> Wrangler:
    """npm-install PACKAGES into the forge cache, once per machine (a lock serialises concurrent runs)."""
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
                                  cwd=root, env=npm_env(), capture_output=True, text=True, timeout=900)
            if proc.returncode != 0:
                shutil.rmtree(root, ignore_errors=True)
                raise RuntimeError(f"npm install failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
            marker.write_text("ok\n")
    return Wrangler(root)


@pytest.fixture(scope="session")
def wrangler() -> Wrangler:
    if not shutil.which("npm") or not shutil.which("node"):
        pytest.fail("needs node and npm (scripts/bootstrap.sh --test installs them)")
    out = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout
    major = int(re.match(r"v(\d+)", out).group(1))
    if major < 20:
        pytest.fail(f"wrangler {WRANGLER_VERSION} needs Node >= 20 (this is Node {major})")
    return install()
