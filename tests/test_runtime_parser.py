"""The sans-I/O request parser: examples, and hypothesis fuzzing (arbitrary bytes, arbitrary splits,
generated valid requests round-tripped)."""

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forge_runtime._http import HttpError, RequestParser, http_date, unquote_bytes


def parse_all(data, splits=None, **limits):
    """Feed `data` (optionally in pieces) and collect requests until an error or more data needed.
    -> (list of (method, path, query, headers, body, keep_alive), error status or None)."""
    p = RequestParser(**limits)
    pieces = [data] if splits is None else _split(data, splits)
    out = []
    try:
        for piece in pieces:
            p.feed(piece)
            while True:
                req = p.next_request()
                if req is None:
                    break
                out.append((req.method, req.path, req.query_string, req.raw_headers, req.body, req.keep_alive))
    except HttpError as exc:
        assert 400 <= exc.status <= 599
        return out, exc.status
    return out, None


def _split(data, cuts):
    cuts = sorted({c % (len(data) + 1) for c in cuts})
    out, prev = [], 0
    for c in cuts:
        out.append(data[prev:c])
        prev = c
    out.append(data[prev:])
    return out


def test_simple_get():
    reqs, err = parse_all(b"GET /a/b?x=1 HTTP/1.1\r\nHost: h\r\nX-Y:  v \r\n\r\n")
    assert err is None
    assert reqs == [("GET", "/a/b", b"x=1", [(b"host", b"h"), (b"x-y", b"v")], b"", True)]


def test_incomplete_needs_more():
    p = RequestParser()
    p.feed(b"GET / HTTP/1.1\r\nHost: h\r\n")
    assert p.next_request() is None
    assert not p.idle
    p.feed(b"\r\n")
    assert p.next_request().path == "/"
    assert p.idle


def test_leading_empty_lines_ignored():
    reqs, err = parse_all(b"\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert err is None and len(reqs) == 1


def test_content_length_body_and_pipelining():
    data = b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabcGET /g HTTP/1.0\r\n\r\n"
    reqs, err = parse_all(data)
    assert err is None
    assert [(r[0], r[1], r[4], r[5]) for r in reqs] == [("POST", "/p", b"abc", True), ("GET", "/g", b"", False)]


def test_chunked_with_extensions_and_trailers():
    data = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3;a=b\r\nabc\r\nA\r\n0123456789\r\n0\r\nT: 1\r\n\r\n"
    reqs, err = parse_all(data)
    assert err is None and reqs[0][4] == b"abc0123456789"


def test_absolute_form_and_ping_host():
    p = RequestParser()
    p.feed(b"GET http://ping/ HTTP/1.1\r\nHost: ping\r\n\r\n")
    req = p.next_request()
    assert (req.host, req.path) == (b"ping", "/")
    p.feed(b"GET http://example.com?q=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    req = p.next_request()
    assert (req.host, req.path, req.query_string) == (b"example.com", "/", b"q=1")


@pytest.mark.parametrize(
    "data,status",
    [
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n", 413),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nB\r\n", 413),
        (b"GET / HTTP/1.1\r\nHost: h\r\n" + b"A: b\r\n" * 20 + b"\r\n", 431),
        (b"GET / HTTP/1.1\r\nHost: h\r\nA: " + b"b" * 300 + b"\r\n\r\n", 431),
        (b"GET / HTTP/3.0\r\nHost: h\r\n\r\n", 505),
        (b"GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 501),
        (b"GET /" + b"a" * 9000, 414),
        (b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", None),
        (b"GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1 2\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: +1\r\n\r\nx", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n 1\r\na\r\n0\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\nbad trailer\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1\nab", 400),
    ],
)
def test_errors(data, status):
    reqs, err = parse_all(data, max_body=10, max_header_bytes=256, max_headers=10)
    assert err == status


def test_unquote_bytes():
    assert unquote_bytes(b"/a%20b%2F%e2%9c%93") == b"/a b/\xe2\x9c\x93"
    assert unquote_bytes(b"/bad%zz%2") == b"/bad%zz%2"
    assert unquote_bytes(b"100%") == b"100%"


def test_http_date():
    assert http_date(0) == "Thu, 01 Jan 1970 00:00:00 GMT"
    assert http_date(1700000000) == "Tue, 14 Nov 2023 22:13:20 GMT"


# -- fuzzing ------------------------------------------------------------------------------------------

# FORGE_FUZZ_EXAMPLES=20000 for a longer local campaign.
FUZZ = settings(
    max_examples=int(os.environ.get("FORGE_FUZZ_EXAMPLES", "400")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@FUZZ
@given(st.binary(max_size=600), st.lists(st.integers(min_value=0, max_value=600), max_size=8))
def test_fuzz_arbitrary_bytes_never_crash_and_split_invariant(data, cuts):
    """Any bytes: only HttpError (4xx/5xx) escapes, and how the bytes are split never matters."""
    whole = parse_all(data, max_body=64, max_header_bytes=256, max_headers=10)
    pieces = parse_all(data, cuts, max_body=64, max_header_bytes=256, max_headers=10)
    assert whole == pieces


token = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!~", min_size=1, max_size=12)
value = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=20)
path_seg = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-._~", max_size=8)


@st.composite
def requests_(draw):
    method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]))
    path = "/" + "/".join(draw(st.lists(path_seg, max_size=4)))
    query = draw(st.one_of(st.just(""), st.text(alphabet="abc=&%20", max_size=10)))
    headers = draw(st.lists(st.tuples(token, value), max_size=6))
    headers = [(n, v) for n, v in headers if n.lower() not in ("host", "content-length", "transfer-encoding", "connection", "expect")]
    body = draw(st.binary(max_size=200))
    chunked = draw(st.booleans()) and bool(body)
    lines = [f"{method} {path}{'?' + query if query else ''} HTTP/1.1", "Host: example"]
    lines += [f"{n}: {v}" for n, v in headers]
    if chunked:
        lines.append("Transfer-Encoding: chunked")
        sizes = draw(st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=6))
        parts, pos = [], 0
        for size in sizes:
            if pos >= len(body):
                break
            piece = body[pos : pos + size]
            pos += len(piece)
            parts.append(b"%x\r\n%s\r\n" % (len(piece), piece))
        if pos < len(body):
            parts.append(b"%x\r\n%s\r\n" % (len(body) - pos, body[pos:]))
        payload = b"".join(parts) + b"0\r\n\r\n"
    else:
        if body:
            lines.append(f"Content-Length: {len(body)}")
        payload = body
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode() + payload
    expected_headers = [(b"host", b"example")] + [(n.lower().encode(), v.strip().encode()) for n, v in headers]
    if chunked:
        expected_headers.append((b"transfer-encoding", b"chunked"))
    elif body:
        expected_headers.append((b"content-length", str(len(body)).encode()))
    return raw, (method, unquote_bytes(path.encode()).decode(), query.encode(), expected_headers, body, True)


@FUZZ
@given(st.lists(requests_(), min_size=1, max_size=4), st.lists(st.integers(min_value=0, max_value=3000), max_size=10))
def test_fuzz_valid_requests_round_trip(reqs, cuts):
    data = b"".join(raw for raw, _ in reqs)
    got, err = parse_all(data, cuts, max_body=1 << 20)
    assert err is None
    assert got == [expected for _, expected in reqs]


@FUZZ
@given(requests_(), st.binary(min_size=1, max_size=40), st.integers(min_value=0, max_value=400))
def test_fuzz_corrupted_requests_fail_cleanly(req, garbage, at):
    raw, _ = req
    at %= len(raw)
    data = raw[:at] + garbage + raw[at:]
    whole = parse_all(data, max_body=1 << 20)
    pieces = parse_all(data, [at, at + 1, at + len(garbage)], max_body=1 << 20)
    assert whole == pieces


def test_leading_crlf_split_across_reads():
    # Found by hypothesis: a lone CR may be the first half of an ignorable empty line.
    assert parse_all(b"\r\n\r\n", [1]) == parse_all(b"\r\n\r\n") == ([], None)
    reqs, err = parse_all(b"\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", [1, 2, 3])
    assert err is None and len(reqs) == 1
