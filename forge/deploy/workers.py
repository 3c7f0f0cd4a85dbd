"""`forge deploy workers --target wasm`: a Cloudflare Workers project that runs the workload's wasm
module (forge build --target wasm) inside the Worker itself, no container.

Per request the Worker instantiates the module (pre-initialised: CPython is already started in
the snapshot), writes the request as one JSON line to the module's stdin, runs `_start`, and turns
the first JSON line on stdout into the Response (docs/wasm.md has the line format). The WASI layer
is a small shim written by forge (src/wasi.js): stdin/stdout/stderr, args, environment (the
Worker's string vars), clocks, random; every other WASI import the module names returns ENOSYS (52).

Checked before anything is written: the build output is a wasm build, and its gzip size fits the
Workers limit (10 MB paid; above 3 MB it needs the paid plan: a warning).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from forge import __version__, output
from forge.deploy.platform import (COMPATIBILITY_DATE, WORKERS_LIMIT_FREE, WORKERS_LIMIT_PAID, WRANGLER_VERSION,
                                   worker_name as _slug, workers_gzip_size)
from forge.errors import DeployConfigError, WorkersModuleTooLarge

MB = 1000 * 1000
FREE_LIMIT, PAID_LIMIT = WORKERS_LIMIT_FREE, WORKERS_LIMIT_PAID
GITIGNORE = "node_modules/\n.wrangler/\ndist/\n"


@dataclass
class WorkersResult:
    out_dir: Path
    name: str
    build_output: Path
    module_size: int
    gzip_size: int
    report: object
    warnings: list[str] = field(default_factory=list)
    built: bool = False


def _wasm_output(project: Path, from_output: Path | None,
                 build_wasm: Callable[[Path], dict] | None) -> tuple[Path, output.WasmOutput, bool]:
    """(build output dir, its build output (forge-build.json), whether it was built now). With no
    output found, `build_wasm(project)` builds one (the CLI passes forge build: deploy takes build
    outputs and does not import the build)."""
    if from_output is None:
        from forge.workload import resolve

        w = resolve(project)
        for base in (project / "dist", Path.cwd() / "dist"):
            if output.is_output(base / w.name):
                found = output.read(base / w.name)
                if isinstance(found, output.WasmOutput):
                    return base / w.name, found, False
        if build_wasm is None:
            raise DeployConfigError(f"{project} has no `forge build --target wasm` output in dist/; build it "
                                    f"first, or pass --from OUT.")
        made = output.BuildOutput.from_summary(build_wasm(project))
        return made.module.parent, made, True
    if not output.is_output(Path(from_output)):
        raise DeployConfigError(f"--from {from_output} is not a forge build output (no {output.MARKER}); "
                                f"run `forge build --target wasm PROJECT -o {from_output}` first.")
    found = output.read(Path(from_output))
    if not isinstance(found, output.WasmOutput):
        raise DeployConfigError(
            f"{from_output} holds a {found.target} build, and Workers run wasm modules: "
            f"build it with `forge build --target wasm`, or deploy the image with `forge deploy cloudflare`.")
    return Path(from_output), found, False


def generate(project: Path, *, target: str = "wasm", from_output: Path | None = None,
             build_wasm: Callable[[Path], dict] | None = None,
             out_dir: Path | None = None, force: bool = False) -> WorkersResult:
    from forge.deploy.files import GeneratedFile, write_generated

    if target != "wasm":
        raise DeployConfigError(f"--target {target}: Workers run wasm modules only (--target wasm); for the "
                                f"native image use `forge deploy cloudflare` (Cloudflare Containers).")
    project = Path(project).resolve()
    if not project.is_dir():
        raise DeployConfigError(f"--project {project} is not a directory.")
    out_dir = Path(out_dir).resolve() if out_dir else project / "deploy" / "workers"
    build_dir, result, built = _wasm_output(project, from_output, build_wasm)
    module = build_dir / result.module.name
    if not module.is_file():
        raise DeployConfigError(f"{module} is missing from the build output; rebuild with --target wasm.")
    data = module.read_bytes()
    gz = workers_gzip_size(data)     # the same verdict as forge build's (forge/deploy/platform.py)
    warnings = []
    if gz > PAID_LIMIT:
        raise WorkersModuleTooLarge(
            f"{module} is {gz / MB:.2f} MB after gzip; a Worker may be at most {PAID_LIMIT / MB:.0f} MB "
            f"(paid plan; {FREE_LIMIT / MB:.0f} MB free). Trim the workload's dependencies, or deploy the "
            f"native image to Cloudflare Containers instead (`forge deploy cloudflare`).")
    if gz > FREE_LIMIT:
        warnings.append(f"the module is {gz / MB:.2f} MB after gzip: over the free plan's {FREE_LIMIT / MB:.0f} MB "
                        f"Worker size limit, within the paid plan's {PAID_LIMIT / MB:.0f} MB.")
    if not result.preinitialized:
        warnings.append("the module is not pre-initialised ([tool.forge.wasm] preinit = false): every request "
                        "pays CPython's start-up inside the Worker.")
    name = _slug(result.name or project.name)
    files = {
        "wrangler.toml": GeneratedFile(render_wrangler_toml(name).encode()),
        "src/index.js": GeneratedFile(INDEX_JS.encode()),
        "src/handler.js": GeneratedFile(HANDLER_JS.encode()),
        "src/wasi.js": GeneratedFile(WASI_JS.encode()),
        "src/app.wasm": GeneratedFile(data),
        "package.json": GeneratedFile(render_package_json(name).encode()),
        ".gitignore": GeneratedFile(GITIGNORE.encode()),
        "README.md": GeneratedFile(render_readme(name, result, len(data), gz).encode()),
    }
    report = write_generated(out_dir, files, force=force, command="forge deploy workers")
    return WorkersResult(out_dir, name, build_dir, len(data), gz, report, warnings, built)


def render_wrangler_toml(name: str) -> str:
    return f"""\
# Generated by forge {__version__} (forge deploy workers). Edits are kept: forge refuses to overwrite them.
name = "{name}"
main = "src/index.js"
compatibility_date = "{COMPATIBILITY_DATE}"

# src/app.wasm is imported as a compiled WebAssembly.Module
[[rules]]
type = "CompiledWasm"
globs = ["**/*.wasm"]
fallthrough = false
"""


def render_package_json(name: str) -> str:
    return json.dumps({
        "name": name, "private": True, "type": "module",
        "scripts": {"deploy": "wrangler deploy", "dev": "wrangler dev", "check": "wrangler deploy --dry-run --outdir dist"},
        "devDependencies": {"wrangler": WRANGLER_VERSION},
    }, indent=2) + "\n"


def render_readme(name: str, result: output.WasmOutput, size: int, gz: int) -> str:
    fits = ("fits the free plan" if gz <= FREE_LIMIT else
            "needs the paid plan" if gz <= PAID_LIMIT else "too large for Workers")
    return f"""\
# {name} on Cloudflare Workers (wasm32-wasi)

Generated by `forge deploy workers` from `{result.module}`.

    npm install && npx wrangler deploy        # npx wrangler dev to try it locally

| | |
|---|---|
| module | `src/app.wasm`, {size / MB:.2f} MB, **{gz / MB:.2f} MB gzip**: {fits} (limits: {FREE_LIMIT / MB:.0f} MB free, {PAID_LIMIT / MB:.0f} MB paid, after gzip) |
| pre-initialised | {result.preinitialized} (CPython started at build time; a request instantiates the snapshot) |
| Python | {result.python} |

Each request gets a fresh instance: the request is written to its stdin as one JSON line
(`{{"method", "path", "headers", "body_base64"}}`), the first JSON line on stdout becomes the
response, and stderr goes to the Worker's log (`wrangler tail`). `src/wasi.js` is the WASI layer;
WASI calls it does not implement return ENOSYS (52). String variables (`[vars]`) become the
module's environment. See forge's docs/wasm.md.
"""


INDEX_JS = """\
// Generated by forge (forge deploy workers): the Worker entry. src/handler.js does the work.
import wasm from "./app.wasm";
import { handle } from "./handler.js";

export default {
  async fetch(request, env) {
    return handle(request, wasm, env);
  },
};
"""

HANDLER_JS = """\
// Generated by forge: one HTTP request -> one JSON line on the module's stdin -> one Response.
// A pre-initialised module exports forge-handle: one instance is kept per isolate and answers one
// request per call. Otherwise every request gets a fresh instance and runs _start.
import { WasiInstance } from "./wasi.js";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const NULL_BODY = new Set([101, 204, 205, 304]);
let kept = null;      // { module, wasi } reused across requests

function toBase64(bytes) {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(s);
}

function fromBase64(text) {
  const s = atob(text);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

export function stringVars(env) {
  const vars = {};
  for (const [k, v] of Object.entries(env || {})) {
    if (typeof v === "string") vars[k] = v;
  }
  return vars;
}

async function run(module, stdin, env) {
  const reactor = WebAssembly.Module.exports(module).some((e) => e.name === "forge-handle");
  if (!reactor) {
    const wasi = await WasiInstance.create(module, { env });
    return wasi.start(stdin);
  }
  if (kept === null || kept.module !== module) {
    kept = { module, wasi: await WasiInstance.create(module, { env }) };
  }
  try {
    const result = kept.wasi.handle(stdin);
    if (result.exitCode !== 0) kept = null;
    return result;
  } catch (e) {
    kept = null;      // a trap leaves the instance unusable: the next request gets a new one
    throw e;
  }
}

export async function handle(request, module, env) {
  const url = new URL(request.url);
  const body = new Uint8Array(await request.arrayBuffer());
  const line = JSON.stringify({
    method: request.method,
    path: url.pathname + url.search,
    headers: [...request.headers],
    body_base64: toBase64(body),
  }) + "\\n";
  let result;
  try {
    result = await run(module, encoder.encode(line), stringVars(env));
  } catch (e) {
    console.error(`the wasm module trapped: ${e}`);
    return new Response("the wasm module failed\\n", { status: 502 });
  }
  if (result.stderr.length) console.error(decoder.decode(result.stderr));
  const text = decoder.decode(result.stdout);
  const end = text.indexOf("\\n");
  const first = end >= 0 ? text.slice(0, end) : text;
  if (result.exitCode !== 0 || !first) {
    return new Response(`the wasm module failed (status ${result.exitCode})\\n`, { status: 502 });
  }
  const reply = JSON.parse(first);
  const headers = new Headers();
  for (const [name, value] of reply.headers || []) headers.append(name, value);
  let out = "body_base64" in reply ? fromBase64(reply.body_base64) : (reply.body ?? "");
  if (NULL_BODY.has(reply.status) || request.method === "HEAD") out = null;
  return new Response(out, { status: reply.status, headers });
}
"""

WASI_JS = """\
// Generated by forge: a minimal WASI preview 1 host.
// stdin is a byte buffer, stdout/stderr are collected, args and environment are given, clocks and
// random numbers are the platform's. No files, sockets or polling: every WASI import the module
// names that is not implemented here returns ENOSYS (52).
const SUCCESS = 0, EBADF = 8, ENOSYS = 52, ESPIPE = 70;
const FILETYPE_CHARACTER_DEVICE = 2;

export class ProcExit extends Error {
  constructor(code) {
    super(`proc_exit(${code})`);
    this.code = code;
  }
}

function join(parts) {
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.length;
  }
  return all;
}

export class WasiInstance {
  constructor(args, env) {
    const encoder = new TextEncoder();
    this.argv = args.map((a) => encoder.encode(a + "\\0"));
    this.envv = Object.entries(env).map(([k, v]) => encoder.encode(`${k}=${v}\\0`));
    this.stdin = new Uint8Array(0);
    this.stdinPos = 0;
    this.out = [];
    this.err = [];
    this.instance = null;
  }

  static async create(module, { args = ["app"], env = {} } = {}) {
    const wasi = new WasiInstance(args, env);
    const impl = wasi.imports();
    const table = {};
    for (const imp of WebAssembly.Module.imports(module)) {
      if (imp.module !== "wasi_snapshot_preview1") {
        throw new Error(`the module imports ${imp.module}.${imp.name}, which is not WASI`);
      }
      table[imp.name] = impl[imp.name] ?? (() => ENOSYS);
    }
    wasi.table = table;
    wasi.instance = await WebAssembly.instantiate(module, { wasi_snapshot_preview1: table });
    return wasi;
  }

  // Run _start to the end with this stdin (a fresh instance is needed for the next request).
  start(stdin) {
    return this.call("_start", stdin, (f) => {
      f();
      return 0;
    });
  }

  // Reactor: forge-handle answers one request line; the instance stays usable.
  handle(stdin) {
    return this.call("forge-handle", stdin, (f) => (f() === 1 ? 0 : 1));
  }

  call(name, stdin, invoke) {
    this.stdin = stdin;
    this.stdinPos = 0;
    this.out = [];
    this.err = [];
    let exitCode;
    try {
      exitCode = invoke(this.instance.exports[name]);
    } catch (e) {
      if (!(e instanceof ProcExit)) throw e;
      exitCode = e.code;
    }
    return { exitCode, stdout: join(this.out), stderr: join(this.err) };
  }

  imports() {
    const self = this;
    const view = () => new DataView(self.instance.exports.memory.buffer);
    const u8 = () => new Uint8Array(self.instance.exports.memory.buffer);
    const putList = (list, ptrs, buf) => {
      const dv = view(), mem = u8();
      let at = buf;
      list.forEach((item, i) => {
        dv.setUint32(ptrs + 4 * i, at, true);
        mem.set(item, at);
        at += item.length;
      });
      return SUCCESS;
    };
    const sizes = (list, pcount, psize) => {
      const dv = view();
      dv.setUint32(pcount, list.length, true);
      dv.setUint32(psize, list.reduce((n, a) => n + a.length, 0), true);
      return SUCCESS;
    };
    const iovecs = (iovs, n) => {
      const dv = view(), found = [];
      for (let i = 0; i < n; i++) found.push([dv.getUint32(iovs + 8 * i, true), dv.getUint32(iovs + 8 * i + 4, true)]);
      return found;
    };
    return {
      args_sizes_get: (pc, ps) => sizes(self.argv, pc, ps),
      args_get: (pp, pb) => putList(self.argv, pp, pb),
      environ_sizes_get: (pc, ps) => sizes(self.envv, pc, ps),
      environ_get: (pp, pb) => putList(self.envv, pp, pb),
      clock_res_get(id, pres) {
        view().setBigUint64(pres, 1000n, true);
        return SUCCESS;
      },
      clock_time_get(id, precision, ptime) {
        const ns = id === 0 ? BigInt(Date.now()) * 1000000n : BigInt(Math.round(performance.now() * 1e6));
        view().setBigUint64(ptime, ns, true);
        return SUCCESS;
      },
      random_get(buf, len) {
        for (let at = 0; at < len; at += 65536) {
          crypto.getRandomValues(u8().subarray(buf + at, buf + Math.min(len, at + 65536)));
        }
        return SUCCESS;
      },
      fd_write(fd, iovs, n, pwritten) {
        if (fd !== 1 && fd !== 2) return EBADF;
        let total = 0;
        for (const [ptr, len] of iovecs(iovs, n)) {
          (fd === 1 ? self.out : self.err).push(u8().slice(ptr, ptr + len));
          total += len;
        }
        view().setUint32(pwritten, total, true);
        return SUCCESS;
      },
      fd_read(fd, iovs, n, pread) {
        if (fd !== 0) return EBADF;
        let total = 0;
        for (const [ptr, len] of iovecs(iovs, n)) {
          const chunk = self.stdin.subarray(self.stdinPos, self.stdinPos + len);
          u8().set(chunk, ptr);
          self.stdinPos += chunk.length;
          total += chunk.length;
          if (chunk.length < len) break;
        }
        view().setUint32(pread, total, true);
        return SUCCESS;
      },
      fd_fdstat_get(fd, pstat) {
        if (fd > 2) return EBADF;
        const dv = view();
        dv.setUint8(pstat, FILETYPE_CHARACTER_DEVICE);
        dv.setUint16(pstat + 2, 0, true);
        dv.setBigUint64(pstat + 8, 0xffffffffffffffffn, true);
        dv.setBigUint64(pstat + 16, 0xffffffffffffffffn, true);
        return SUCCESS;
      },
      fd_fdstat_set_flags: (fd) => (fd > 2 ? EBADF : SUCCESS),
      fd_filestat_get(fd, pstat) {
        if (fd > 2) return EBADF;
        u8().fill(0, pstat, pstat + 64);
        view().setUint8(pstat + 16, FILETYPE_CHARACTER_DEVICE);
        return SUCCESS;
      },
      fd_seek: (fd) => (fd > 2 ? EBADF : ESPIPE),
      fd_tell: (fd) => (fd > 2 ? EBADF : ESPIPE),
      fd_close: (fd) => (fd > 2 ? EBADF : SUCCESS),
      fd_sync: (fd) => (fd > 2 ? EBADF : SUCCESS),
      fd_prestat_get: () => EBADF,          // no pre-opened directories
      fd_prestat_dir_name: () => EBADF,
      sched_yield: () => SUCCESS,
      proc_exit(code) {
        throw new ProcExit(code);
      },
    };
  }
}
"""
