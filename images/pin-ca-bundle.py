#!/usr/bin/env python3
"""Re-pin the CA bundle of forge's base rootfs to a certifi release from PyPI.

Usage: .venv/bin/python images/pin-ca-bundle.py VERSION      e.g. 2026.10.18

Downloads the certifi wheel of that exact version with pip, copies its certifi/cacert.pem to
images/base/etc/ssl/certs/ca-certificates.crt and records version and sha256 in images/base.lock.json
(tests/test_image_rootfs.py checks the file against the lock). Changing the bundle changes the
base layer, and so every forge image digest: do it in a commit of its own.
"""

import hashlib
import json
import sys
from pathlib import Path

from forge.image.rootfs import certifi_cacert

here = Path(__file__).resolve().parent


def main(version: str) -> None:
    pem = certifi_cacert(version)
    lock_path = here / "base.lock.json"
    lock = json.loads(lock_path.read_text())
    entry = lock["ca-certificates"]
    (here / entry["path"]).write_bytes(pem)
    entry.update(version=version, sha256=hashlib.sha256(pem).hexdigest())
    lock_path.write_text(json.dumps(lock, indent=2) + "\n")
    print(f"pinned certifi {version}: sha256 {entry['sha256']}, {len(pem)} bytes")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
