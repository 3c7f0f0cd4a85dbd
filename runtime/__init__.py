"""forge_runtime: the workload contract and a lean HTTP/1.1 server, compiled into every forge binary.

A workload module exposes `app`, one of
  * a plain handler:  def app(request) -> Response | bytes | str | dict | list | None  (or async def)
  * an ASGI 3 app:    async def app(scope, receive, send)   (http + lifespan)
  * a WSGI app:       def app(environ, start_response)

    import forge_runtime, mymodule
    forge_runtime.run(mymodule.app)          # or: python -m forge_runtime mymodule:app

Importing this package loads no server code: `run` imports it on call. See docs/runtime.md.
"""

from ._detect import detect
from ._types import Headers, Request, Response

__all__ = ["Headers", "Request", "Response", "detect", "run"]
__version__ = "0.1.0"


def run(app, port=None, host=None):
    """Serve `app` on host:port (default 0.0.0.0:$PORT, PORT defaulting to 8080) until SIGTERM or
    SIGINT, then drain in-flight requests (FORGE_DRAIN_SECONDS) and return. Exits non-zero if an
    ASGI lifespan startup fails."""
    from ._run import serve

    serve(app, port, host)
