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

__all__ = ["Headers", "Request", "Response", "detect", "pause_gc_for_startup", "run"]  # (+ lazy: cloudflare, step)
__version__ = "0.1.0"


_gc_paused = False


def pause_gc_for_startup():
    """Turn the cyclic garbage collector off until `run` is listening. Start-up (imports, the app's
    module code) creates long-lived objects only, so collecting during it is wasted time: ~1-2 ms of
    a cold start. When listening, `run` moves what start-up made into the permanent generation
    (gc.freeze: later collections skip it) and turns the collector back on. forge's generated entry
    and `python -m forge_runtime` call this first."""
    global _gc_paused
    import gc

    gc.disable()
    _gc_paused = True


def run(app, port=None, host=None):
    """Serve `app` on host:port (default 0.0.0.0:$PORT, PORT defaulting to 8080) until SIGTERM or
    SIGINT, then drain in-flight requests (FORGE_DRAIN_SECONDS) and return. Exits non-zero if an
    ASGI lifespan startup fails."""
    import sys

    cf = sys.modules.get(__name__ + ".cloudflare")
    if cf is not None and cf.STEPS:
        app = cf.with_steps(app)             # Workflow steps (forge_runtime.step) answer /_forge/steps/
    from ._run import serve

    serve(app, port, host, resume_gc=_gc_paused)


def __getattr__(name):
    # forge_runtime.cloudflare (bindings, Workflow steps) and forge_runtime.step load only when used.
    if name in ("cloudflare", "step"):
        import importlib

        cloudflare = importlib.import_module(__name__ + ".cloudflare")
        return cloudflare if name == "cloudflare" else cloudflare.step
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
