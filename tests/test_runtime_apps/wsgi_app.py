"""WSGI app that reports its environ (PEP 3333 checks) and streams."""

import json


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path.startswith("/environ"):
        body = environ["wsgi.input"].read()
        info = {}
        for key, value in environ.items():
            if isinstance(value, str):
                info[key] = value
        info["wsgi.version"] = list(environ["wsgi.version"])
        info["wsgi.multithread"] = environ["wsgi.multithread"]
        info["wsgi.multiprocess"] = environ["wsgi.multiprocess"]
        info["wsgi.run_once"] = environ["wsgi.run_once"]
        info["wsgi.errors.has_write"] = hasattr(environ["wsgi.errors"], "write")
        info["wsgi.input.has_read"] = hasattr(environ["wsgi.input"], "read")
        info["body"] = body.decode("latin-1")
        data = json.dumps(info).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return [data]
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return (f"line {i}\n".encode() for i in range(4))
    if path == "/write":
        write = start_response("201 Created", [("Content-Type", "text/plain")])
        write(b"via write; ")
        return [b"and iterable"]
    if path == "/error":
        raise RuntimeError("wsgi boom")
    if path == "/sleep":  # the request watchdog's tests
        import time

        time.sleep(float(environ["QUERY_STRING"].partition("s=")[2] or "0.2"))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"slept"]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello from wsgi"]
