"""Sans-I/O HTTP/1.1 request parser and response serialisation.

Nothing here touches a socket, so the parser can be fuzzed directly (tests/test_runtime_parser.py).
It imports nothing beyond the interpreter core: start-up time is the product.

The parser is strict where leniency would open request-smuggling or desync holes (bare LF, obs-fold,
Content-Length together with Transfer-Encoding, conflicting Content-Length, non-hex chunk sizes, ...):
all of them are answered with a 4xx by the server and the connection is closed.
"""

from ._types import Request

# RFC 9110 token characters.
_TCHAR = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# Field values: HTAB, visible ASCII and SP, obs-text.
_VALUE_CHARS = b"\t" + bytes(range(0x20, 0x7F)) + bytes(range(0x80, 0x100))
# Request targets: visible ASCII; obs-text tolerated because some clients send raw UTF-8 paths.
_TARGET_CHARS = bytes(range(0x21, 0x7F)) + bytes(range(0x80, 0x100))
_HEXDIG = b"0123456789abcdefABCDEF"
_DIGITS = b"0123456789"

_MAX_LINE = 8192  # request line, chunk-size line


class HttpError(Exception):
    """A request the server refuses; `status` is what the client gets. The connection is closed."""

    def __init__(self, status, reason):
        Exception.__init__(self, status, reason)
        self.status = status
        self.reason = reason


def _bad(reason):
    return HttpError(400, reason)


def _parse_request_line(line):
    parts = line.split(b" ")
    if len(parts) != 3:
        raise _bad("malformed request line")
    method, target, version = parts
    if not method or method.translate(None, _TCHAR):
        raise _bad("invalid method")
    if version == b"HTTP/1.1":
        v11 = True
    elif version == b"HTTP/1.0":
        v11 = False
    elif (
        len(version) == 8
        and version[:5] == b"HTTP/"
        and version[6:7] == b"."
        and version[5] in _DIGITS
        and version[7] in _DIGITS
    ):
        raise HttpError(505, "HTTP version not supported")
    else:
        raise _bad("invalid HTTP version")
    if not target or target.translate(None, _TARGET_CHARS):
        raise _bad("invalid request target")
    return method, target, v11


def _split_target(method, target):
    """-> (authority or None, path, query) from origin-, absolute- or asterisk-form."""
    if target[0] == 47:  # b"/"
        path, _, query = target.partition(b"?")
        return None, path, query
    low = target[:8].lower()
    if low.startswith(b"http://") or low.startswith(b"https://"):
        rest = target[target.index(b"//") + 2 :]
        slash = rest.find(b"/")
        qmark = rest.find(b"?")
        if slash < 0 or (0 <= qmark < slash):
            cut = qmark if qmark >= 0 else len(rest)
            authority, pathq = rest[:cut], b"/" + rest[cut:]
        else:
            authority, pathq = rest[:slash], rest[slash:]
        if not authority or b"@" in authority:
            raise _bad("invalid absolute-form target")
        path, _, query = pathq.partition(b"?")
        return authority, path, query
    if target == b"*" and method == b"OPTIONS":
        return None, b"*", b""
    raise _bad("unsupported request target form")


_HEX = None


def unquote_bytes(raw):
    """Percent-decode bytes (no '+' handling). Invalid escapes are left as they are."""
    if b"%" not in raw:
        return raw
    global _HEX
    if _HEX is None:
        _HEX = {(a + b).encode(): bytes([int(a + b, 16)]) for a in "0123456789abcdefABCDEF" for b in "0123456789abcdefABCDEF"}
    parts = raw.split(b"%")
    out = [parts[0]]
    hx = _HEX
    for item in parts[1:]:
        ch = hx.get(item[:2])
        if ch is None:
            out.append(b"%")
            out.append(item)
        else:
            out.append(ch)
            out.append(item[2:])
    return b"".join(out)


# Parser states
_HEAD, _BODY_LEN, _BODY_CHUNKED = 0, 1, 2
# Chunked sub-states
_C_SIZE, _C_DATA, _C_DATA_END, _C_TRAILER = 0, 1, 2, 3


class RequestParser:
    """Incremental request parser for one connection.

    `feed(data)` appends bytes; `next_request()` returns a complete `Request`, None when more bytes
    are needed, or raises `HttpError`. After an error the parser is unusable (close the connection).
    The same bytes always give the same requests however they are split across `feed` calls.
    """

    __slots__ = (
        "buf", "max_body", "max_header_bytes", "max_headers", "state", "req", "remaining",
        "body", "csub", "want_continue", "trailer_bytes", "line_checked", "scan",
    )

    def __init__(self, max_body=1 << 20, max_header_bytes=32768, max_headers=100):
        self.buf = bytearray()
        self.max_body = max_body
        self.max_header_bytes = max_header_bytes
        self.max_headers = max_headers
        self.state = _HEAD
        self.req = None
        self.remaining = 0
        self.body = None
        self.csub = _C_SIZE
        self.want_continue = False
        self.trailer_bytes = 0
        self.line_checked = False
        self.scan = 0

    def feed(self, data):
        self.buf += data

    @property
    def idle(self):
        """True when no byte of a next request has arrived."""
        return self.state == _HEAD and not self.buf

    def next_request(self):
        if self.state == _HEAD:
            if not self._parse_head():
                return None
        if self.state == _BODY_LEN:
            buf = self.buf
            n = self.remaining
            if len(buf) < n:
                return None
            self.req.body = bytes(buf[:n])
            del buf[:n]
        elif self.state == _BODY_CHUNKED:
            if not self._parse_chunked():
                return None
            self.req.body = bytes(self.body)
            self.body = None
        req = self.req
        self.req = None
        self.state = _HEAD
        self.want_continue = False
        return req

    # -- head -------------------------------------------------------------------------------------

    def _parse_head(self):
        buf = self.buf
        # RFC 9112 2.2: ignore empty lines received before the request line.
        while buf[:2] == b"\r\n":
            del buf[:2]
            self.scan = 0
        if not buf:
            return False
        end = buf.find(b"\r\n\r\n", self.scan)
        if end < 0:
            # Resume the search where this one stopped: a client trickling its head byte by byte
            # must not make every read rescan the whole buffer.
            self.scan = max(0, len(buf) - 3)
            self._check_partial_head()
            return False
        self.scan = 0
        if end + 4 > self.max_header_bytes:
            self._check_partial_head()
            raise HttpError(431, "request header fields too large")
        head = bytes(buf[:end])
        del buf[: end + 4]
        self.line_checked = False
        self._build_request(head)
        return True

    def _check_partial_head(self):
        """Fail fast on garbage instead of waiting for a blank line that may never come."""
        buf = self.buf
        if not self.line_checked:
            if buf == b"\r":
                return  # maybe the first half of an ignorable leading CRLF
            if buf[0] not in _TCHAR:
                raise _bad("invalid request line")
            eol = buf.find(b"\r\n")
            if eol >= 0:
                if eol > _MAX_LINE:
                    raise HttpError(414, "request line too long")
                _parse_request_line(bytes(buf[:eol]))
                self.line_checked = True
            elif len(buf) > _MAX_LINE:
                raise HttpError(414, "request line too long")
            elif b"\n" in buf:
                raise _bad("bare LF in request line")
        if len(buf) > self.max_header_bytes:
            raise HttpError(431, "request header fields too large")

    def _build_request(self, head):
        lines = head.split(b"\r\n")
        if len(lines[0]) > _MAX_LINE:
            raise HttpError(414, "request line too long")
        method, target, v11 = _parse_request_line(lines[0])
        if len(lines) - 1 > self.max_headers:
            raise HttpError(431, "too many header fields")
        headers = []
        append = headers.append
        content_length = None
        chunked = False
        keep_alive = v11
        expect = False
        host = None
        n_host = 0
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep or not name or name.translate(None, _TCHAR):
                raise _bad("malformed header field")
            value = value.strip(b" \t")
            if value.translate(None, _VALUE_CHARS):
                raise _bad("invalid character in header value")
            name = name.lower()
            append((name, value))
            if name == b"content-length":
                if not value or value.translate(None, _DIGITS) or len(value) > 18:
                    raise _bad("invalid Content-Length")
                n = int(value)
                if content_length is not None and n != content_length:
                    raise _bad("conflicting Content-Length")
                content_length = n
            elif name == b"transfer-encoding":
                if chunked:
                    raise _bad("repeated Transfer-Encoding")
                if value.lower() != b"chunked":
                    raise HttpError(501, "unsupported Transfer-Encoding")
                chunked = True
            elif name == b"connection":
                for token in value.lower().split(b","):
                    token = token.strip(b" \t")
                    if token == b"close":
                        keep_alive = False
                        break
                    if token == b"keep-alive" and not v11:
                        keep_alive = True
            elif name == b"host":
                n_host += 1
                host = value
            elif name == b"expect":
                if value.lower() != b"100-continue":
                    raise HttpError(417, "unsupported Expect")
                expect = True
        if chunked and content_length is not None:
            raise _bad("both Content-Length and Transfer-Encoding")
        if chunked and not v11:
            raise _bad("Transfer-Encoding in HTTP/1.0")
        if n_host > 1 or (v11 and n_host == 0):
            raise _bad("missing or repeated Host")
        authority, raw_path, query = _split_target(method, target)
        if authority is not None:
            host = authority
        req = Request(
            method.decode("ascii"),
            unquote_bytes(raw_path).decode("utf-8", "surrogateescape"),
            raw_path,
            query,
            headers,
            b"",
        )
        req.http_version = "1.1" if v11 else "1.0"
        req.keep_alive = keep_alive
        req.host = host
        self.req = req
        if chunked:
            self.state = _BODY_CHUNKED
            self.csub = _C_SIZE
            self.body = bytearray()
            self.trailer_bytes = 0
            self.want_continue = expect
        elif content_length:
            if content_length > self.max_body:
                raise HttpError(413, "request body too large")
            self.state = _BODY_LEN
            self.remaining = content_length
            self.want_continue = expect and len(self.buf) < content_length
        else:
            self.state = _BODY_LEN
            self.remaining = 0

    # -- chunked body -----------------------------------------------------------------------------

    def _parse_chunked(self):
        buf = self.buf
        while True:
            sub = self.csub
            if sub == _C_SIZE:
                eol = buf.find(b"\r\n")
                if eol < 0:
                    if len(buf) > _MAX_LINE:
                        raise _bad("chunk size line too long")
                    if b"\n" in buf:
                        raise _bad("bare LF in chunked body")
                    return False
                line = bytes(buf[:eol])
                del buf[: eol + 2]
                size, _, ext = line.partition(b";")
                if not size or size.translate(None, _HEXDIG) or len(size) > 16:
                    raise _bad("invalid chunk size")
                if ext and ext.translate(None, _VALUE_CHARS):
                    raise _bad("invalid chunk extension")
                n = int(size, 16)
                if n == 0:
                    self.csub = _C_TRAILER
                    continue
                if len(self.body) + n > self.max_body:
                    raise HttpError(413, "request body too large")
                self.remaining = n
                self.csub = _C_DATA
            elif sub == _C_DATA:
                if not buf:
                    return False
                n = self.remaining
                take = buf[:n]
                self.body += take
                del buf[: len(take)]
                self.remaining = n - len(take)
                if self.remaining:
                    return False
                self.csub = _C_DATA_END
            elif sub == _C_DATA_END:
                if len(buf) < 2:
                    if buf and buf[0] != 13:
                        raise _bad("missing CRLF after chunk data")
                    return False
                if buf[0] != 13 or buf[1] != 10:
                    raise _bad("missing CRLF after chunk data")
                del buf[:2]
                self.csub = _C_SIZE
            else:  # trailer section: field lines until an empty line; discarded
                eol = buf.find(b"\r\n")
                if eol < 0:
                    if len(buf) + self.trailer_bytes > self.max_header_bytes:
                        raise HttpError(431, "trailer fields too large")
                    if b"\n" in buf:
                        raise _bad("bare LF in trailer")
                    return False
                line = bytes(buf[:eol])
                del buf[: eol + 2]
                if not line:
                    return True
                self.trailer_bytes += eol + 2
                if self.trailer_bytes > self.max_header_bytes:
                    raise HttpError(431, "trailer fields too large")
                name, sep, value = line.partition(b":")
                if not sep or not name or name.translate(None, _TCHAR) or value.translate(None, _VALUE_CHARS):
                    raise _bad("malformed trailer field")


# -- responses --------------------------------------------------------------------------------------

REASONS = {
    100: "Continue", 101: "Switching Protocols", 200: "OK", 201: "Created", 202: "Accepted",
    203: "Non-Authoritative Information", 204: "No Content", 205: "Reset Content", 206: "Partial Content",
    300: "Multiple Choices", 301: "Moved Permanently", 302: "Found", 303: "See Other", 304: "Not Modified",
    307: "Temporary Redirect", 308: "Permanent Redirect", 400: "Bad Request", 401: "Unauthorized",
    402: "Payment Required", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    406: "Not Acceptable", 408: "Request Timeout", 409: "Conflict", 410: "Gone", 411: "Length Required",
    412: "Precondition Failed", 413: "Content Too Large", 414: "URI Too Long",
    415: "Unsupported Media Type", 416: "Range Not Satisfiable", 417: "Expectation Failed",
    418: "I'm a teapot", 421: "Misdirected Request", 422: "Unprocessable Content", 423: "Locked",
    425: "Too Early", 426: "Upgrade Required", 428: "Precondition Required", 429: "Too Many Requests",
    431: "Request Header Fields Too Large", 451: "Unavailable For Legal Reasons",
    500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway", 503: "Service Unavailable",
    504: "Gateway Timeout", 505: "HTTP Version Not Supported",
}

_STATUS_LINES = {}


def status_line(status):
    line = _STATUS_LINES.get(status)
    if line is None:
        if not isinstance(status, int) or not 100 <= status <= 999:
            raise ValueError(f"invalid HTTP status {status!r}")
        line = f"HTTP/1.1 {status} {REASONS.get(status, '')}\r\n".encode("latin-1")
        if len(_STATUS_LINES) < 1000:
            _STATUS_LINES[status] = line
    return line


def body_allowed(status, method):
    return method != "HEAD" and status >= 200 and status != 204 and status != 304


_WDAY = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTH = ("", "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def http_date(t):
    """IMF-fixdate (RFC 9110 5.6.7) without the locale-dependent strftime."""
    import time as _time

    g = _time.gmtime(t)
    return "%s, %02d %s %04d %02d:%02d:%02d GMT" % (
        _WDAY[g.tm_wday], g.tm_mday, _MONTH[g.tm_mon], g.tm_year, g.tm_hour, g.tm_min, g.tm_sec
    )


def check_header(name, value):
    """Refuse header names/values that would split the response."""
    if not name or name.translate(None, _TCHAR):
        raise ValueError(f"invalid response header name {name!r}")
    if value.translate(None, _VALUE_CHARS):
        raise ValueError(f"invalid response header value for {name!r}")
