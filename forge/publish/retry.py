"""Retry policy for registry requests: which answers are worth another try, and how long to wait.

Connection errors and 5xx/429 answers are retried with exponential backoff (bounded: `retries`
retries, at most MAX_BACKOFF seconds apart). A blob upload that breaks half-way raises _Retryable,
and the pusher starts that blob again from its HEAD, since an upload session cannot be trusted after a reset.
"""

from __future__ import annotations

import time

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_BACKOFF = 8.0


class _Retryable(Exception):
    """A blob upload went wrong in a way that starting it again can fix."""

    def __init__(self, message: str, connection: bool = False):
        super().__init__(message)
        self.connection = connection


def backoff_sleep(backoff: float, attempt: int) -> None:
    """Wait before retry number `attempt` (0-based): backoff * 2**attempt, at most MAX_BACKOFF."""
    time.sleep(min(backoff * 2**attempt, MAX_BACKOFF))
