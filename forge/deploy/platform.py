"""Cloudflare platform facts in one place, so `forge build --target wasm` and `forge deploy workers`
give the same size verdict. (Not to be confused with forge/deploy/cloudflare_platform.py: the
bindings bridge emitted into a Worker.)"""

from __future__ import annotations

import gzip

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
