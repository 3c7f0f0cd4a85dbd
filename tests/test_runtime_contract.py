"""forge_runtime's contract: detect() rules, Request/Response/Headers, handler return values."""

import functools
import json

import pytest

import forge_runtime
from forge_runtime import Headers, Request, Response, detect
from forge_runtime._types import format_sse, to_response


def handler(request):
    return "x"


async def async_handler(request):
    return "x"


async def asgi(scope, receive, send):
    pass


def wsgi(environ, start_response):
    return []


class ASGIClass:
    async def __call__(self, scope, receive, send):
        pass


class WSGIClass:
    def __call__(self, environ, start_response):
        return []


class HandlerClass:
    def __call__(self, request):
        return "x"


class Methods:
    def handle(self, request):
        return "x"

    async def asgi(self, scope, receive, send):
        pass


def with_default(request, extra=None):
    return "x"


def test_detect_functions():
    assert detect(handler) == "handler"
    assert detect(async_handler) == "handler"
    assert detect(asgi) == "asgi"
    assert detect(wsgi) == "wsgi"
    assert detect(with_default) == "handler"
    assert detect(lambda r: r) == "handler"


def test_detect_instances_methods_partials():
    assert detect(ASGIClass()) == "asgi"
    assert detect(WSGIClass()) == "wsgi"
    assert detect(HandlerClass()) == "handler"
    assert detect(Methods().handle) == "handler"
    assert detect(Methods().asgi) == "asgi"
    assert detect(functools.partial(lambda cfg, environ, start_response: [], {})) == "wsgi"


def test_detect_override_and_errors(monkeypatch):
    def star(*args):
        pass

    with pytest.raises(TypeError, match="__forge_kind__"):
        detect(star)
    star.__forge_kind__ = "wsgi"
    assert detect(star) == "wsgi"
    star.__forge_kind__ = "nope"
    with pytest.raises(TypeError):
        detect(star)
    with pytest.raises(TypeError, match="callable"):
        detect(42)

    def sync_three(a, b, c):
        pass

    async def async_two(a, b):
        pass

    with pytest.raises(TypeError, match="cannot tell"):
        detect(sync_three)
    with pytest.raises(TypeError, match="cannot tell"):
        detect(async_two)
    monkeypatch.setenv("FORGE_APP_KIND", "asgi")
    assert detect(sync_three) == "asgi"


def test_detect_real_frameworks():
    import bottle  # the test extra installs both frameworks
    import starlette.applications

    assert detect(starlette.applications.Starlette()) == "asgi"
    assert detect(bottle.Bottle()) == "wsgi"


def test_request_properties():
    req = Request("POST", "/p", b"/p", b"a=1&b=%C3%A9&a=2&flag", [(b"content-type", b"application/json"), (b"x-k", b"v")], b'{"x": 1}')
    assert req.query == {"a": "2", "b": "\u00e9", "flag": ""}
    assert req.query_items == [("a", "1"), ("b", "\u00e9"), ("a", "2"), ("flag", "")]
    assert req.json() == {"x": 1}
    assert req.text == '{"x": 1}'
    h = req.headers
    assert h["Content-Type"] == "application/json" and h.get("X-K") == "v" and "x-k" in h
    assert h.get("missing") is None and "missing" not in h and len(h) == 2
    with pytest.raises(KeyError):
        h["missing"]


def test_headers_multi():
    h = Headers([(b"a", b"1"), (b"a", b"2")])
    assert h.getlist("A") == ["1", "2"] and h["a"] == "1" and h.items() == [("a", "1"), ("a", "2")]


def test_response_helpers():
    r = Response.json({"k": "\u00e9"}, status=201)
    assert (r.status, json.loads(r.body), r.headers["content-type"]) == (201, {"k": "\u00e9"}, "application/json")
    r = Response.text("hi")
    assert r.body == b"hi" and r.headers["content-type"].startswith("text/plain")
    r = Response(iter([b"a"]))
    assert r.streaming
    assert not Response(b"a").streaming
    r = Response.sse(["one", {"event": "e", "data": "two\nlines", "id": 3}])
    assert r.headers["content-type"] == "text/event-stream"
    assert list(r.body) == [b"data: one\n\n", b"id: 3\nevent: e\ndata: two\ndata: lines\n\n"]
    assert format_sse(b"x") == b"data: x\n\n"


def test_to_response():
    assert to_response("s").body == b"s"
    assert to_response(b"b").headers["content-type"] == "application/octet-stream"
    assert json.loads(to_response({"a": 1}).body) == {"a": 1}
    assert json.loads(to_response([1]).body) == [1]
    assert to_response(None).status == 204
    r = Response(b"x")
    assert to_response(r) is r
    with pytest.raises(TypeError):
        to_response(3.5)


def test_public_api():
    assert set(forge_runtime.__all__) == {"Headers", "Request", "Response", "detect", "pause_gc_for_startup", "run"}
