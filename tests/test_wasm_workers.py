"""`forge deploy workers --target wasm`: the Workers project around examples/hello's wasm module.
Its Worker code (request -> JSON line -> WASI shim -> Response) runs in Node (V8, as in workerd)
against the real module; wrangler (the pinned release) bundles the project offline (--dry-run) and reports the
gzip size that counts against the Workers limit."""

import gzip
import json
import os
import re
import subprocess
import tomllib
from pathlib import Path

import pytest

from forge.deploy.platform import WRANGLER_VERSION
from tests.helpers import run_forge

pytestmark = pytest.mark.sdk
ROOT = Path(__file__).resolve().parent.parent
HELLO = ROOT / "examples" / "hello"


@pytest.fixture(scope="module")
def build(wasm_host_sdk, tmp_path_factory):
    out = tmp_path_factory.mktemp("wasm") / "hello"
    r = run_forge("build", str(HELLO), "--target", "wasm", "-o", str(out), "--json", timeout=3600)
    assert r.returncode == 0, r.stderr[-4000:]
    return json.loads(r.stdout)


@pytest.fixture(scope="module")
def project(build, tmp_path_factory):
    out = tmp_path_factory.mktemp("workers") / "hello-worker"
    r = run_forge("deploy", "workers", "--target", "wasm", "--from", str(Path(build["module"]).parent),
                  "-o", str(out), "--project", str(HELLO))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "MB gzip" in r.stdout and "wrote" in r.stdout
    return out


def test_project_files(project, build):
    config = tomllib.loads((project / "wrangler.toml").read_text())
    assert config["main"] == "src/index.js" and config["name"] == "hello"
    assert config["rules"] == [{"type": "CompiledWasm", "globs": ["**/*.wasm"], "fallthrough": False}]
    assert (project / "src" / "app.wasm").read_bytes() == Path(build["module"]).read_bytes()
    assert 'import wasm from "./app.wasm"' in (project / "src" / "index.js").read_text()
    assert json.loads((project / "package.json").read_text())["devDependencies"] == {"wrangler": WRANGLER_VERSION}
    readme = (project / "README.md").read_text()
    assert "MB gzip" in readme and "ENOSYS" in readme


NODE = r"""
import { readFileSync } from "node:fs";
import { handle } from "%(src)s/handler.js";
import { WasiInstance } from "%(src)s/wasi.js";

const module = await WebAssembly.compile(readFileSync("%(src)s/app.wasm"));
const results = [];
const ask = async (url, init) => {
  const r = await handle(new Request("http://worker" + url, init), module, { GREETING: "hej", BINDING: {} });
  results.push({ status: r.status, headers: [...r.headers], body: await r.text() });
};
await ask("/");
await ask("/healthz");
await ask("/echo?x=1", { method: "POST", body: JSON.stringify({ n: [1, 2] }), headers: { "content-type": "application/json" } });
await ask("/echo", { method: "POST", body: "{broken" });
await ask("/nowhere");
const times = [];
for (let i = 0; i < 200; i++) {
  const t = performance.now();
  await ask("/");
  times.push(performance.now() - t);
}
// one-shot path (_start on a fresh instance), as for a module without forge-handle
const once = await WasiInstance.create(module, {});
const started = once.start(new TextEncoder().encode(JSON.stringify({ path: "/" }) + "\n"));
// every WASI import the shim lacks is a stub that answers ENOSYS
const implemented = Object.keys(once.imports());
const stubs = Object.entries(once.table).filter(([name]) => !implemented.includes(name)).map(([name, f]) => [name, f()]);
times.sort((a, b) => a - b);
console.log(JSON.stringify({ results: results.slice(0, 5), warm: results.slice(5).every((r) => r.body === "hello from forge"),
  median_ms: times[100], started: { exitCode: started.exitCode, stdout: new TextDecoder().decode(started.stdout) }, stubs }));
"""


def test_worker_code_serves_requests_in_node(project):
    script = project / "node-test.mjs"
    script.write_text(NODE % {"src": project / "src"})
    proc = subprocess.run(["node", str(script)], capture_output=True, text=True, timeout=600)
    script.unlink()
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout.strip().splitlines()[-1])
    r = doc["results"]
    assert r[0] == {"status": 200, "headers": [["content-type", "text/plain; charset=utf-8"]], "body": "hello from forge"}
    assert r[1]["status"] == 200 and json.loads(r[1]["body"])["ok"] is True
    assert json.loads(r[2]["body"]) == {"echo": {"n": [1, 2]}, "bytes": 11}
    assert r[3]["status"] == 400 and r[4]["status"] == 404
    assert doc["warm"] is True
    assert doc["started"]["exitCode"] == 0 and json.loads(doc["started"]["stdout"])["body"] == "hello from forge"
    assert doc["stubs"] and all(code == 52 for _, code in doc["stubs"])
    print(f"\nNode (V8): warm request through the Worker code, median {doc['median_ms']:.3f} ms; "
          f"ENOSYS stubs: {', '.join(n for n, _ in doc['stubs'])}")


def test_wrangler_bundles_it_and_reports_the_size(project, wrangler, build):
    wrangler.link_into(project)
    dry = wrangler.run(project, "wrangler", "deploy", "--dry-run", "--outdir", "dist")
    assert dry.returncode == 0, dry.stdout[-3000:] + dry.stderr[-3000:]
    m = re.search(r"Total Upload: ([\d.]+) KiB / gzip: ([\d.]+) KiB", dry.stdout + dry.stderr)
    assert m, dry.stdout
    total_kib, gzip_kib = map(float, m.groups())
    assert (project / "dist" / "index.js").is_file()
    assert any(p.suffix == ".wasm" for p in (project / "dist").iterdir())
    ours = len(gzip.compress(Path(build["module"]).read_bytes(), 6))
    print(f"\nwrangler: total {total_kib:.0f} KiB, gzip {gzip_kib:.0f} KiB ({gzip_kib * 1024 / 1e6:.2f} MB; "
          f"forge's estimate {ours / 1e6:.2f} MB; limits 3 MB free, 10 MB paid)")
    assert gzip_kib * 1024 < 10_000_000


def test_native_output_or_target_is_refused(tmp_path):
    out = tmp_path / "native"
    out.mkdir()
    (out / "forge-build.json").write_text(json.dumps({"target": "native", "name": "hello"}))
    r = run_forge("deploy", "workers", "--from", str(out), "-o", str(tmp_path / "w"), "--project", str(HELLO))
    assert r.returncode == 44 and "native build" in r.stderr
    r = run_forge("deploy", "workers", "--target", "native", "-o", str(tmp_path / "w"), "--project", str(HELLO))
    assert r.returncode == 44 and "wasm modules only" in r.stderr
    assert not (tmp_path / "w").exists()


def test_module_over_the_limit_is_refused(tmp_path):
    out = tmp_path / "big"
    out.mkdir()
    (out / "app.wasm").write_bytes(b"\0asm\1\0\0\0" + os.urandom(11_000_000))   # incompressible
    (out / "forge-build.json").write_text(json.dumps({"target": "wasm", "name": "big", "module": str(out / "app.wasm"),
                                                      "preinitialized": True}))
    r = run_forge("deploy", "workers", "--from", str(out), "-o", str(tmp_path / "w"), "--project", str(HELLO))
    assert r.returncode == 83 and "at most 10 MB" in r.stderr
    assert not (tmp_path / "w").exists()
