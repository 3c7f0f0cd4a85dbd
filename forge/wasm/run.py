"""Run a forge wasm module with wasmtime (the PyPI package): the same thing `wasmtime run` does.

    python -m forge.wasm.run dist/hello/app.wasm < requests.jsonl      (or app.cwasm)

stdin is the request stream (JSON lines, docs/wasm.md), stdout gets the responses; the timings go
to stderr with --time.
"""

from __future__ import annotations

import atexit
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class RunResult:
    exit_code: int
    stdout: bytes
    stderr: bytes
    load_ms: float          # compile (.wasm) or deserialize (.cwasm)
    instantiate_ms: float
    start_ms: float         # _start: everything the module does, including serving stdin
    trap: str | None = None


_ENGINE = None


def engine():
    global _ENGINE
    if _ENGINE is None:
        import wasmtime

        _ENGINE = wasmtime.Engine()
        # Free it while wasmtime's module globals still exist: left to interpreter shutdown, its
        # __del__ runs after they are cleared and prints an "Exception ignored" traceback.
        atexit.register(_close_engine)
    return _ENGINE


def _close_engine() -> None:
    global _ENGINE
    if _ENGINE is not None:
        _ENGINE.close()
        _ENGINE = None


def load(path: Path):
    import wasmtime

    path = Path(path)
    if path.suffix == ".cwasm":
        return wasmtime.Module.deserialize_file(engine(), str(path))
    return wasmtime.Module.from_file(engine(), str(path))


def run(module_or_path, stdin: bytes = b"", env: dict | None = None, argv: tuple[str, ...] = ("app",)) -> RunResult:
    """Instantiate a fresh instance, feed stdin, run _start to the end."""
    import wasmtime

    t0 = time.perf_counter()
    module = load(module_or_path) if isinstance(module_or_path, (str, Path)) else module_or_path
    t1 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="forge-wasm-") as tmp:
        fin, fout, ferr = (Path(tmp) / n for n in ("stdin", "stdout", "stderr"))
        fin.write_bytes(stdin)
        linker = wasmtime.Linker(engine())
        linker.define_wasi()
        store = wasmtime.Store(engine())
        cfg = wasmtime.WasiConfig()
        cfg.argv = list(argv)
        cfg.env = sorted((env or {}).items())
        cfg.stdin_file, cfg.stdout_file, cfg.stderr_file = str(fin), str(fout), str(ferr)
        store.set_wasi(cfg)
        code, trap = 0, None
        t2 = time.perf_counter()
        instance = linker.instantiate(store, module)
        t3 = time.perf_counter()
        try:
            instance.exports(store)["_start"](store)
        except wasmtime.ExitTrap as exc:
            code = exc.code
        except wasmtime.WasmtimeError as exc:
            code, trap = 134, str(exc)
        t4 = time.perf_counter()
        out, err = fout.read_bytes(), ferr.read_bytes()
    return RunResult(code, out, err, (t1 - t0) * 1000, (t3 - t2) * 1000, (t4 - t3) * 1000, trap)


@dataclass
class ReactorResult:
    stdout: bytes
    stderr: bytes
    instantiate_ms: float
    handle_ms: list[float]      # one entry per forge-handle call that answered a request


def reactor(module_or_path, stdin: bytes, env: dict | None = None) -> ReactorResult:
    """One instance, `forge-handle` called once per request line until it reports EOF (what a host
    that keeps the instance does, e.g. the Worker forge deploy workers writes)."""
    import wasmtime

    module = load(module_or_path) if isinstance(module_or_path, (str, Path)) else module_or_path
    with tempfile.TemporaryDirectory(prefix="forge-wasm-") as tmp:
        fin, fout, ferr = (Path(tmp) / n for n in ("stdin", "stdout", "stderr"))
        fin.write_bytes(stdin)
        linker = wasmtime.Linker(engine())
        linker.define_wasi()
        store = wasmtime.Store(engine())
        cfg = wasmtime.WasiConfig()
        cfg.argv = ["app"]
        cfg.env = sorted((env or {}).items())
        cfg.stdin_file, cfg.stdout_file, cfg.stderr_file = str(fin), str(fout), str(ferr)
        store.set_wasi(cfg)
        t0 = time.perf_counter()
        instance = linker.instantiate(store, module)
        inst_ms = (time.perf_counter() - t0) * 1000
        handle = instance.exports(store)["forge-handle"]
        times = []
        while True:
            t = time.perf_counter()
            n = handle(store)
            if n != 1:
                if n != 0:
                    raise RuntimeError(f"forge-handle returned {n}: {ferr.read_text(errors='replace')[-2000:]}")
                break
            times.append((time.perf_counter() - t) * 1000)
        return ReactorResult(fout.read_bytes(), ferr.read_bytes(), inst_ms, times)


def main(argv: list[str]) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m forge.wasm.run", description=__doc__.splitlines()[0])
    p.add_argument("module", type=Path, help="app.wasm or app.cwasm")
    p.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--time", action="store_true", help="print load/instantiate/_start times on stderr")
    args = p.parse_args(argv)
    env = dict(e.split("=", 1) for e in args.env)
    r = run(args.module, sys.stdin.buffer.read(), env)
    sys.stdout.buffer.write(r.stdout)
    sys.stderr.buffer.write(r.stderr)
    if r.trap:
        print(r.trap, file=sys.stderr)
    if args.time:
        print(f"load {r.load_ms:.1f} ms, instantiate {r.instantiate_ms:.2f} ms, _start {r.start_ms:.2f} ms",
              file=sys.stderr)
    return r.exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
