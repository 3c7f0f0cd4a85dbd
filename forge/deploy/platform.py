"""Cloudflare platform facts in one place, so `forge build --target wasm` and `forge deploy workers`
give the same size verdict. (Not to be confused with forge/deploy/cloudflare_platform.py: the
bindings bridge emitted into a Worker.)"""

from __future__ import annotations

import gzip
import re

WRANGLER_VERSION = "4.164.0"         # newest on npm (2026-12-02); needs Node >= 22.12
CONTAINERS_VERSION = "0.3.7"         # @cloudflare/containers
TYPESCRIPT_VERSION = "5.9.3"
COMPATIBILITY_DATE = "2026-04-01"    # supported by the workerd of every wrangler since 4.86.0

MB = 1000 * 1000
# Workers' limits on the gzip-compressed Worker bundle, as `wrangler deploy` reports it.
WORKERS_LIMIT_FREE = 3 * MB
WORKERS_LIMIT_PAID = 10 * MB
# wrangler reports the bundle's size gzip-compressed at zlib's default level (6); level 9 would
# say a module fits that wrangler then calls too large, so both build and deploy use 6.
WORKERS_GZIP_LEVEL = 6


def workers_gzip_size(data: bytes) -> int:
    return len(gzip.compress(data, WORKERS_GZIP_LEVEL, mtime=0))


def workers_fit(gzip_size: int) -> dict:
    return {"gzip_size": gzip_size, "free_limit": WORKERS_LIMIT_FREE, "paid_limit": WORKERS_LIMIT_PAID,
            "fits_free": gzip_size <= WORKERS_LIMIT_FREE, "fits_paid": gzip_size <= WORKERS_LIMIT_PAID}


def worker_name(text: str) -> str:
    """A Worker / Container application name: lower-case letters, digits and dashes, at most 63."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:63].strip("-") or "forge-app"
