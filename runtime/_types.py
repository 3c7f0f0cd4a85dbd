"""Request, Response and Headers: the plain-handler contract.

No imports at module level: json is imported on first use only.
"""


class Headers:
    """Read-only, case-insensitive view of header fields (names and values as str, latin-1)."""

    __slots__ = ("raw",)

    def __init__(self, raw):
        # raw: list of (lower-case name bytes, value bytes), as parsed.
        self.raw = raw

    def get(self, name, default=None):
        key = name.lower().encode("latin-1")
        for k, v in self.raw:
            if k == key:
                return v.decode("latin-1")
        return default

    def getlist(self, name):
        key = name.lower().encode("latin-1")
        return [v.decode("latin-1") for k, v in self.raw if k == key]

    def __getitem__(self, name):
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __contains__(self, name):
        if not isinstance(name, str):
            return False
        key = name.lower().encode("latin-1")
        return any(k == key for k, _ in self.raw)

    def keys(self):
        return [k.decode("latin-1") for k, _ in self.raw]

    def items(self):
        return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in self.raw]

    def __iter__(self):
        return iter(self.keys())

    def __len__(self):
        return len(self.raw)

    def __repr__(self):
        return f"Headers({self.items()!r})"


def _parse_query(qs):
    """application/x-www-form-urlencoded -> list of (name, value) str pairs (utf-8, lenient)."""
    from ._http import unquote_bytes

    pairs = []
    for part in qs.split(b"&"):
        if not part:
            continue
        name, _, value = part.partition(b"=")
        name = unquote_bytes(name.replace(b"+", b" ")).decode("utf-8", "replace")
        value = unquote_bytes(value.replace(b"+", b" ")).decode("utf-8", "replace")
        pairs.append((name, value))
    return pairs


class Request:
    """One HTTP request as a plain handler sees it.

    method: "GET", ...; path: percent-decoded path (str); raw_path: bytes as sent; query_string: bytes;
    query: dict of decoded query parameters (last value wins; `query_items` keeps them all);
    headers: case-insensitive `Headers`; body: bytes (already read in full, at most FORGE_MAX_BODY);
    text: body decoded as UTF-8; json(): body parsed as JSON; client: (host, port) or None.
    """

    __slots__ = (
        "method", "path", "raw_path", "query_string", "raw_headers", "body", "client",
        "http_version", "keep_alive", "host", "_headers", "_query",
    )

    def __init__(self, method, path, raw_path, query_string, raw_headers, body):
        self.method = method
        self.path = path
        self.raw_path = raw_path
        self.query_string = query_string
        self.raw_headers = raw_headers
        self.body = body
        self.client = None
        self.http_version = "1.1"
        self.keep_alive = True
        self.host = None
        self._headers = None
        self._query = None

    @property
    def headers(self):
        h = self._headers
        if h is None:
            h = self._headers = Headers(self.raw_headers)
        return h

    @property
    def query_items(self):
        q = self._query
        if q is None:
            q = self._query = _parse_query(self.query_string)
        return q

    @property
    def query(self):
        return dict(self.query_items)

    @property
    def text(self):
        return self.body.decode("utf-8")

    def json(self):
        import json

        return json.loads(self.body)

    def __repr__(self):
        return f"<Request {self.method} {self.path!r}>"


def _is_stream(body):
    return hasattr(body, "__aiter__") or (hasattr(body, "__iter__") and not isinstance(body, (bytes, bytearray, memoryview, str)))


class Response:
    """What a plain handler returns (it may also return bytes, str, dict/list (JSON) or None (204)).

    body: bytes, str (sent as UTF-8), or an iterator / async iterator of bytes or str chunks, which is
    streamed with chunked transfer-encoding (unless a Content-Length header is given).
    headers: dict or list of (name, value) pairs of str.
    """

    __slots__ = ("status", "headers", "body")

    def __init__(self, body=b"", status=200, headers=None, content_type=None):
        self.status = status
        if headers is None:
            headers = {}
        elif not isinstance(headers, dict):
            headers = list(headers)
        if content_type is not None:
            if isinstance(headers, dict):
                headers = dict(headers)
                headers["content-type"] = content_type
            else:
                headers.append(("content-type", content_type))
        self.headers = headers
        self.body = body

    @property
    def streaming(self):
        return _is_stream(self.body)

    @classmethod
    def json(cls, data, status=200, headers=None):
        import json

        body = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        return cls(body, status, headers, "application/json")

    @classmethod
    def text(cls, text, status=200, headers=None):
        return cls(text.encode("utf-8"), status, headers, "text/plain; charset=utf-8")

    @classmethod
    def html(cls, html, status=200, headers=None):
        return cls(html.encode("utf-8"), status, headers, "text/html; charset=utf-8")

    @classmethod
    def stream(cls, chunks, status=200, headers=None, content_type="application/octet-stream"):
        """Stream an iterator or async iterator of bytes/str chunks."""
        return cls(chunks, status, headers, content_type)

    @classmethod
    def sse(cls, events, status=200, headers=None):
        """Server-sent events: each item of `events` (str, bytes, or dict of SSE fields such as
        {"event": "tick", "data": "1", "id": "7"}) becomes one event."""
        h = {"cache-control": "no-cache"}
        if headers:
            h.update(headers if isinstance(headers, dict) else dict(headers))
        if hasattr(events, "__aiter__"):

            async def agen():
                async for ev in events:
                    yield format_sse(ev)

            body = agen()
        else:
            body = (format_sse(ev) for ev in events)
        return cls(body, status, h, "text/event-stream")

    def __repr__(self):
        return f"<Response {self.status}>"


def format_sse(event):
    if isinstance(event, bytes):
        event = event.decode("utf-8")
    if isinstance(event, str):
        event = {"data": event}
    out = []
    for key in ("id", "event", "retry"):
        if key in event:
            out.append(f"{key}: {event[key]}\n")
    for line in str(event.get("data", "")).split("\n"):
        out.append(f"data: {line}\n")
    out.append("\n")
    return "".join(out).encode("utf-8")


def to_response(result):
    """Normalise what a handler returned into a Response."""
    if isinstance(result, Response):
        return result
    if isinstance(result, (bytes, bytearray, memoryview)):
        return Response(bytes(result), 200, None, "application/octet-stream")
    if isinstance(result, str):
        return Response(result.encode("utf-8"), 200, None, "text/plain; charset=utf-8")
    if isinstance(result, (dict, list)):
        return Response.json(result)
    if result is None:
        return Response(b"", 204)
    raise TypeError(
        f"handler returned {type(result).__name__}; return a Response, bytes, str, dict, list or None"
    )
