"""Which kind of workload is `app`?  (without importing `inspect`, which costs milliseconds)

Rules, in order:
1. `app.__forge_kind__` (or env FORGE_APP_KIND) set to "handler", "asgi" or "wsgi" wins.
2. The callable inspected is `app` itself if it is a function or method, else `type(app).__call__`
   (an instance with `__call__`), with `self` not counted. functools.partial objects are unwrapped.
3. Count its positional parameters without defaults ("required"); if that is not 1-3, count all
   positional parameters. A `*args` parameter makes the count ambiguous: set `__forge_kind__`.
   - 3 and a coroutine function (async def)          -> "asgi"   (scope, receive, send)
   - 2 and not a coroutine function                  -> "wsgi"   (environ, start_response)
   - 1                                               -> "handler" (request), sync or async
   Anything else raises TypeError naming the rule it broke.
"""

_CO_VARARGS = 0x04
_CO_COROUTINE = 0x80
_CO_ITERABLE_COROUTINE = 0x100
_KINDS = ("handler", "asgi", "wsgi")


def _code_target(app):
    """-> (function-like with __code__, number of bound leading params)."""
    bound = 0
    obj = app
    for _ in range(8):
        partial_func = getattr(obj, "func", None)
        if type(obj).__name__ == "partial" and partial_func is not None and hasattr(obj, "args"):
            bound += len(obj.args)
            obj = partial_func
            continue
        func = getattr(obj, "__func__", None)  # bound method (which also proxies __code__)
        if func is not None and hasattr(func, "__code__") and getattr(obj, "__self__", None) is not None:
            return func, bound + 1
        if hasattr(obj, "__code__"):
            return obj, bound
        call = getattr(type(obj), "__call__", None)  # noqa: B004 - the function itself, not callability
        if call is None:
            break
        if hasattr(call, "__code__"):
            return call, bound + 1
        wrapped = getattr(obj, "__wrapped__", None)
        if wrapped is not None:
            obj = wrapped
            continue
        break
    return None, 0


def is_coroutine_callable(app):
    func, _ = _code_target(app)
    if func is None:
        return False
    if getattr(func, "_is_coroutine_marker", None) is not None or getattr(func, "_is_coroutine", None) is not None:
        return True
    return bool(func.__code__.co_flags & (_CO_COROUTINE | _CO_ITERABLE_COROUTINE))


def detect(app):
    """Return "handler", "asgi" or "wsgi" for a workload's `app` (see the module docstring)."""
    kind = getattr(app, "__forge_kind__", None)
    if kind is None:
        import os

        kind = os.environ.get("FORGE_APP_KIND") or None
    if kind is not None:
        if kind not in _KINDS:
            raise TypeError(f"__forge_kind__/FORGE_APP_KIND must be one of {_KINDS}, not {kind!r}")
        return kind
    if not callable(app):
        raise TypeError(f"app must be callable, got {type(app).__name__}")
    func, bound = _code_target(app)
    if func is None:
        raise TypeError(f"cannot inspect {app!r}: set app.__forge_kind__ = 'handler' | 'asgi' | 'wsgi'")
    code = func.__code__
    if code.co_flags & _CO_VARARGS:
        raise TypeError(f"{app!r} takes *args: set app.__forge_kind__ = 'handler' | 'asgi' | 'wsgi'")
    total = code.co_argcount - bound
    defaults = len(getattr(func, "__defaults__", None) or ())
    required = total - defaults
    n = required if 1 <= required <= 3 else total
    is_async = bool(code.co_flags & (_CO_COROUTINE | _CO_ITERABLE_COROUTINE)) or is_coroutine_callable(app)
    if n == 1:
        return "handler"
    if n == 3 and is_async:
        return "asgi"
    if n == 2 and not is_async:
        return "wsgi"
    raise TypeError(
        f"cannot tell what {app!r} is: {n} positional parameter(s), "
        f"{'async' if is_async else 'sync'}; expected handler(request), async ASGI (scope, receive, send) "
        "or sync WSGI (environ, start_response); or set app.__forge_kind__"
    )
