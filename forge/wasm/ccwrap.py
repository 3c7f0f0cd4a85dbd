"""The C compiler Nuitka's Scons sees for the wasm target: zig cc for wasm32-wasi.

forge copies this file into the wasm toolchain cache and points CC at a `clang` shim that runs it
(Nuitka recognises clang by name). Compiles go to `zig cc -target wasm32-wasi` unchanged. The
final link is forge's own: Nuitka's link line carries the host interpreter's library list
(-l:libssl.a, -lutil, -lrt, ...) that has no meaning for wasm, so the wrapper keeps only the
object files and links them with forge's glue, libpython's thread.o ahead of libpython3.11.a
(zig's wasi-libc defines the same pthread stubs, and the first definition wins), libmpdec,
libexpat and wasi-libc's emulation libraries.

Configuration comes from the environment (set by forge.targets.wasm):
  FORGE_WASM_ZIG        the zig executable
  FORGE_WASM_LINK       JSON: {"pre": [objects before Nuitka's], "post": [archives/flags after]}
  FORGE_WASM_LOG        file that gets every command line (one per line)
"""

import json
import os
import sys


def _log(cmd):
    path = os.environ.get("FORGE_WASM_LOG")
    if path:
        with open(path, "a") as fh:
            fh.write(" ".join(cmd) + "\n")


def _response_file(arg):
    name = arg[1:].strip('"')
    with open(name) as fh:
        return [line.strip().strip('"') for line in fh if line.strip()]


def main(argv):
    zig = os.environ["FORGE_WASM_ZIG"]
    args = [a for a in argv if not a.startswith("--target=")]
    is_link = "-c" not in args and "-o" in args and not any(a in ("-E", "-S", "-M", "-MM") for a in args)
    if "-dumpversion" in args or "--version" in args or args == ["-v"]:
        cmd = [zig, "cc", *args]
    elif not is_link:
        cmd = [zig, "cc", "-target", "wasm32-wasi", *args]
    else:
        out = args[args.index("-o") + 1].strip('"')
        objects = []
        for a in args:
            if a.startswith("@"):
                objects += _response_file(a)
            elif a.endswith((".o", '.o"')):
                objects.append(a.strip('"'))
        extra = json.loads(os.environ.get("FORGE_WASM_LINK", "{}"))
        cmd = [zig, "cc", "-target", "wasm32-wasi", "-o", out,
               *extra.get("pre", []), *objects, *extra.get("post", [])]
    _log(cmd)
    os.execv(zig, cmd)


if __name__ == "__main__":
    main(sys.argv[1:])
