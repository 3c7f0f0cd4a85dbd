"""python -m forge_runtime module:attr [--port N] [--host H]"""

import os
import sys

USAGE = "usage: python -m forge_runtime MODULE[:ATTR] [--port N] [--host HOST]   (ATTR defaults to app)"


def load(spec):
    """'pkg.mod:obj.attr' -> the object; the current directory is importable, as with `python -m`."""
    module_name, _, attr = spec.partition(":")
    if not module_name:
        raise SystemExit(USAGE)
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    __import__(module_name)
    obj = sys.modules[module_name]
    for part in (attr or "app").split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise SystemExit(f"forge_runtime: {module_name!r} has no attribute {attr or 'app'!r}") from None
    return obj


def main(argv=None):
    args = list(sys.argv[1:] if argv is None else argv)
    port = host = None
    spec = None
    while args:
        a = args.pop(0)
        if a in ("-h", "--help"):
            print(USAGE)
            return 0
        if a in ("--port", "--host"):
            if not args:
                raise SystemExit(USAGE)
            value = args.pop(0)
            if a == "--port":
                port = int(value)
            else:
                host = value
        elif a.startswith("--port="):
            port = int(a[7:])
        elif a.startswith("--host="):
            host = a[7:]
        elif spec is None and not a.startswith("-"):
            spec = a
        else:
            raise SystemExit(USAGE)
    if spec is None:
        raise SystemExit(USAGE)
    from . import pause_gc_for_startup, run

    pause_gc_for_startup()
    run(load(spec), port=port, host=host)
    return 0


if __name__ == "__main__":
    sys.exit(main())
