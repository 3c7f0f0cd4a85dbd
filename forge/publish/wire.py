"""Small helpers on registry HTTP answers and URLs (shared by the client and its auth)."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import requests


def registry_errors(resp: requests.Response) -> str:
    try:
        errs = resp.json().get("errors") or []
        parts = [f"{e.get('code', '?')}: {e.get('message', '')}".strip() for e in errs if isinstance(e, dict)]
        if parts:
            return "; ".join(parts)
    except ValueError:
        pass
    text = (resp.text or "").strip().replace("\n", " ")
    return text[:300] or resp.reason or "no details"


def error_codes(resp: requests.Response) -> set[str]:
    try:
        return {e.get("code") for e in resp.json().get("errors") or [] if isinstance(e, dict)}
    except (ValueError, AttributeError):
        return set()


def reason(exc: BaseException) -> str:
    """The innermost cause of a requests exception, e.g. "[Errno 111] Connection refused"."""
    while exc.__context__ is not None and exc.__context__ is not exc:
        exc = exc.__context__
    text = str(exc)
    return (text.rsplit(": ", 1)[-1] if "Errno" in text else text)[:200] or exc.__class__.__name__


def add_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))
