"""The generated binding handlers and Workflows, run in Miniflare (wrangler's own, on real workerd) with
its local KV, R2, D1, Queues and Workflows; forge_runtime.cloudflare talks to them over HTTP exactly
as in the container (FORGE_CLOUDFLARE_URL set, virtual host in Host). The Workflow's steps go to the
examples/pipeline workload built by `forge build` (the static binary that ships in the image; Miniflare
cannot run a container, so the local Worker's Container stand-in forwards to that binary's port). Workers AI has no local emulation: its handler is
tested against a stand-in env.AI (a Miniflare wrapped binding)."""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests

from forge.deploy.cloudflare import generate
from tests.helpers import free_port, run_forge

pytestmark = pytest.mark.sdk           # the workload is the forge-built binary
ROOT = Path(__file__).resolve().parent.parent
TOKEN = "test-token"

HARNESS = r"""
import { Miniflare } from "miniflare";
const cfg = JSON.parse(process.argv[2]);
const mf = new Miniflare({
  host: "127.0.0.1",
  port: cfg.port,
  workers: [
    {
      name: "forge-local",
      modules: true,
      scriptPath: cfg.script,
      compatibilityDate: cfg.compatibilityDate,
      kvNamespaces: cfg.kv, r2Buckets: cfg.r2, d1Databases: cfg.d1, queueProducers: cfg.queues,
      workflows: cfg.workflows,
      bindings: cfg.vars,
      wrappedBindings: { AI: { scriptName: "ai-standin" } },
    },
    {
      // Workers AI has no local emulation: a stand-in env.AI.
      name: "ai-standin",
      modules: true,
      script: `export default function () { return { async run(model, inputs, options) {
        if (model === "@cf/forge/fail") throw new Error("model overloaded");
        const data = (inputs.text ?? []).map((t) => [t.length, 1]);
        return { model, inputs, options: options ?? null, data }; } }; }`,
    },
    {
      // Consumes the queues: each message lands in KV (the SESSIONS namespace) as queue:<queue>:<id>.
      name: "queue-consumer",
      modules: true,
      kvNamespaces: { SEEN: cfg.kv.SESSIONS },
      queueConsumers: Object.fromEntries(Object.values(cfg.queues).map((q) => [q, { maxBatchTimeout: 0.05 }])),
      script: `export default { async queue(batch, env) { for (const m of batch.messages) {
        await env.SEEN.put("queue:" + batch.queue + ":" + m.id, JSON.stringify(m.body)); m.ack(); } } };`,
    },
  ],
  kvPersist: cfg.persist + "/kv", r2Persist: cfg.persist + "/r2", d1Persist: cfg.persist + "/d1",
  workflowsPersist: cfg.persist + "/workflows",
});
const url = await mf.ready;
console.log("READY " + url.href);
process.on("SIGTERM", async () => { await mf.dispose(); process.exit(0); });
"""

# Workflows only this test needs, next to the example's pipeline.
TEST_STEPS = '''
import time
import forge_runtime
from forge_runtime import cloudflare

_slow = {}


@forge_runtime.step("check", workflow="doomed", retries=2, delay=1)
def check(params, outputs):
    raise cloudflare.StepFailed("document rejected: " + params.get("why", "no reason"))


@forge_runtime.step("sleepy", workflow="slow", retries=2, delay="1 second", timeout="2 seconds")
def sleepy(params, outputs):
    _slow[params["id"]] = _slow.get(params["id"], 0) + 1
    if _slow[params["id"]] == 1:
        time.sleep(6)                         # past the step's timeout: the Workflow retries
    return {"attempts": _slow[params["id"]]}


@forge_runtime.step("submit", workflow="review")
def submit(params, outputs):
    return cloudflare.wait_for_event("approval", timeout="1 minute")


@forge_runtime.step("publish", workflow="review")
def publish(params, outputs):
    return {"approved_by": outputs["submit"]["by"]}


@forge_runtime.step("rest", workflow="nap")
def rest(params, outputs):
    return cloudflare.sleep("1 second", output={"rested": True})


@forge_runtime.step("after", workflow="nap")
def after(params, outputs):
    return outputs["rest"]
'''


def _wait_http(url, deadline=30.0):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            return requests.get(url, timeout=2)
        except requests.ConnectionError:
            time.sleep(0.1)
    raise AssertionError(f"{url} never answered")


@pytest.fixture(scope="module")
def local(wrangler, sdk, tmp_path_factory):
    """examples/pipeline (+ test workflows) built by forge, deployed from that build, its local emulation
    bundled by wrangler and run in Miniflare, and the forge-built binary serving with FORGE_CLOUDFLARE_URL
    pointing there."""
    tmp = tmp_path_factory.mktemp("cflocal")
    project = tmp / "pipeline"
    shutil.copytree(ROOT / "examples" / "pipeline", project)
    (project / "teststeps.py").write_text(TEST_STEPS)
    (project / "app.py").write_text((project / "app.py").read_text() + "\nimport teststeps  # noqa: E402,F401\n")
    build_out = tmp / "build"
    built = run_forge("build", str(project), "-o", str(build_out), "--json", timeout=1800)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-4000:]
    binary = Path(json.loads(built.stdout)["binary"])
    out = generate(project, image_ref="docker.io/you/pipeline:v1", from_output=build_out, out_dir=tmp / "cf").out_dir
    wrangler.link_into(out)
    bundled = wrangler.run(out, "wrangler", "deploy", "--dry-run", "--outdir", "dist-local", "-c", "wrangler.local.jsonc")
    assert bundled.returncode == 0, bundled.stdout + bundled.stderr
    local_cfg = json.loads("\n".join(line for line in (out / "wrangler.local.jsonc").read_text().splitlines()
                                     if not line.startswith("//")))
    mf_port, app_port = free_port(), free_port()
    cfg = {
        "port": mf_port, "script": "dist-local/local.js", "compatibilityDate": local_cfg["compatibility_date"],
        "kv": {k["binding"]: k["id"] for k in local_cfg["kv_namespaces"]},
        "r2": {b["binding"]: b["bucket_name"] for b in local_cfg["r2_buckets"]},
        "d1": {d["binding"]: d["database_id"] for d in local_cfg["d1_databases"]},
        "queues": {q["binding"]: q["queue"] for q in local_cfg["queues"]["producers"]},
        "workflows": {w["binding"]: {"name": w["name"], "className": w["class_name"]} for w in local_cfg["workflows"]},
        "vars": {"FORGE_LOCAL_CONTAINER_URL": f"http://127.0.0.1:{app_port}", "FORGE_WORKFLOW_TOKEN": TOKEN},
        "persist": str(tmp / "state"),
    }
    (out / "harness.mjs").write_text(HARNESS)
    env = {**os.environ, "FORGE_CLOUDFLARE_URL": f"http://127.0.0.1:{mf_port}", "PORT": str(app_port)}
    logs = tmp / "logs"
    logs.mkdir()
    mf = subprocess.Popen([str(wrangler.node), "harness.mjs", json.dumps(cfg)], cwd=out, stdout=open(logs / "mf.out", "w"),
                          stderr=open(logs / "mf.err", "w"), env=env)
    # The shipped binary, not the sources: run from an empty directory so nothing is imported from project/.
    (tmp / "run").mkdir()
    app = subprocess.Popen([str(binary)], cwd=tmp / "run", env=env,
                           stdout=open(logs / "app.out", "w"), stderr=subprocess.STDOUT)
    old = os.environ.get("FORGE_CLOUDFLARE_URL")
    try:
        _wait_http(f"http://127.0.0.1:{mf_port}/", 60)
        _wait_http(f"http://127.0.0.1:{app_port}/")
        os.environ["FORGE_CLOUDFLARE_URL"] = env["FORGE_CLOUDFLARE_URL"]
        yield {"mf": f"http://127.0.0.1:{mf_port}", "app": f"http://127.0.0.1:{app_port}", "out": out,
               "state": tmp / "state", "logs": logs}
    finally:
        if old is None:
            os.environ.pop("FORGE_CLOUDFLARE_URL", None)
        else:
            os.environ["FORGE_CLOUDFLARE_URL"] = old
        for proc in (app, mf):
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


# --- bindings ------------------------------------------------------------------------------------------------------
def test_kv(local):
    from forge_runtime import cloudflare as cf

    kv = cf.kv("SESSIONS")
    kv.put("session/1", b"\x00alice", ttl=3600)
    kv.put("session/2", {"user": "bob"})
    assert kv.get("session/1") == b"\x00alice" and kv.get_json("session/2") == {"user": "bob"}
    assert kv.get("session/none") is None and kv.get("session/none", b"-") == b"-"
    listed = kv.list(prefix="session/")
    assert [k["name"] for k in listed["keys"]] == ["session/1", "session/2"] and listed["complete"]
    assert listed["keys"][0]["expiration"] > time.time() + 3000           # the TTL reached KV
    assert kv.list(prefix="session/", limit=1)["cursor"]
    kv.delete("session/1")
    assert kv.get("session/1") is None
    with pytest.raises(ValueError, match="at least 60"):
        kv.put("k", "v", ttl=5)
    r = requests.put(f"{local['mf']}/keys/k?ttl=5", headers={"X-Forge-Host": "sessions.kv.forge.internal"}, data=b"v")
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_parameter"
    assert any((local["state"] / "kv").rglob("*"))                     # real local storage


def test_r2_streams(local, tmp_path):
    from forge_runtime import cloudflare as cf

    r2 = cf.r2("ARTIFACTS")
    blob = os.urandom(3 * 1024 * 1024)
    path = tmp_path / "blob.bin"
    path.write_bytes(blob)
    with open(path, "rb") as f:                                        # a file: sent with its length
        put = r2.put("big/blob.bin", f, content_type="application/x-test", metadata={"owner": "ci"})
    assert put["size"] == len(blob)
    assert r2.put("gen.txt", (b"ab" for _ in range(5000)))["size"] == 10000   # chunked upload
    assert r2.put("small", io.BytesIO(b"xyz"))["size"] == 3
    head = r2.head("big/blob.bin")
    assert head.size == len(blob) and head.content_type == "application/x-test" and head.metadata == {"owner": "ci"}
    assert r2.head("nope") is None and r2.get("nope") is None
    with r2.get("big/blob.bin") as obj:
        chunks = list(obj)
    assert b"".join(chunks) == blob and len(chunks) > 1                 # streamed in chunks
    listed = r2.list(prefix="big/")
    assert [o["key"] for o in listed["objects"]] == ["big/blob.bin"]
    assert r2.list(delimiter="/")["prefixes"] == ["big/"]
    r2.delete("small")
    assert r2.get("small") is None


def test_d1(local):
    from forge_runtime import cloudflare as cf

    db = cf.d1("DB")
    db.execute("CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body TEXT, score REAL)")
    meta = db.execute("INSERT INTO notes (body, score) VALUES (?, ?)", ["first", 1.5])["meta"]
    assert meta["changes"] == 1
    db.batch([("INSERT INTO notes (body, score) VALUES (?, ?)", ["second", 2]),
              ("INSERT INTO notes (body, score) VALUES (?, ?)", ["third", None])])
    rows = db.query("SELECT body, score FROM notes WHERE score >= ? ORDER BY id", [1])
    assert rows == [{"body": "first", "score": 1.5}, {"body": "second", "score": 2}]
    with pytest.raises(cf.QueryError) as err:
        db.query("SELEC 1")
    assert err.value.status == 400 and "syntax error" in err.value.message and err.value.binding == "DB"


def test_queue(local):
    from forge_runtime import cloudflare as cf

    q = cf.queue("EVENTS")
    q.send({"event": "one"})
    q.send_batch([{"event": "two"}, {"event": "three"}])
    kv = cf.kv("SESSIONS")
    deadline = time.monotonic() + 15
    seen = []
    while time.monotonic() < deadline:
        seen = [kv.get_json(k["name"]) for k in kv.list(prefix="queue:pipeline-events:")["keys"]]
        if len([s for s in seen if s.get("event") in ("one", "two", "three")]) >= 3:
            break
        time.sleep(0.2)
    assert {"one", "two", "three"} <= {s.get("event") for s in seen}
    with pytest.raises(cf.BindingRejected, match="delaySeconds"):
        q.send({"x": 1}, delay=-1)


def test_ai_stand_in(local):
    from forge_runtime import cloudflare as cf

    out = cf.ai().run("@cf/baai/bge-small-en-v1.5", {"text": ["abc"]}, max_tokens=5)
    assert out["model"] == "@cf/baai/bge-small-en-v1.5" and out["options"] == {"max_tokens": 5}
    with pytest.raises(cf.BindingFailed, match="model overloaded") as err:
        cf.ai().run("@cf/forge/fail", {})
    assert err.value.kind == "ai" and err.value.status == 502


def test_errors_are_typed(local, monkeypatch):
    from forge_runtime import cloudflare as cf

    with pytest.raises(cf.NotFound, match="no binding answers on nope.kv.forge.internal"):
        cf.kv("NOPE").get("x")
    monkeypatch.setenv("FORGE_CLOUDFLARE_URL", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(cf.BindingUnavailable, match="cannot reach"):
        cf.kv("SESSIONS").get("x")
    monkeypatch.delenv("FORGE_CLOUDFLARE_URL")
    with pytest.raises(cf.BindingUnavailable, match="FORGE_CLOUDFLARE_URL"):
        cf.kv("SESSIONS", timeout=3).get("x")


def test_async(local):
    from forge_runtime import cloudflare as cf

    async def main():
        kv = cf.aio.kv("SESSIONS")
        await kv.put("async", "yes")
        got = await asyncio.gather(*(kv.get("async") for _ in range(5)))
        await cf.aio.r2("ARTIFACTS").put("async.bin", b"z" * 200_000)
        obj = await cf.aio.r2("ARTIFACTS").get("async.bin")
        size = 0
        async for chunk in obj:
            size += len(chunk)
        rows = await cf.aio.d1("DB").query("SELECT 1 AS one")
        return got, size, rows

    got, size, rows = asyncio.run(main())
    assert got == [b"yes"] * 5 and size == 200_000 and rows == [{"one": 1}]


# --- workflows ------------------------------------------------------------------------------------------------------
def _start(local, workflow, params):
    r = requests.post(f"{local['mf']}/_forge/workflows/{workflow}", json=params,
                      headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _status(local, workflow, instance):
    r = requests.get(f"{local['mf']}/_forge/workflows/{workflow}/{instance}",
                     headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["status"]


def _wait(local, workflow, instance, states=("complete", "errored", "terminated"), timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = _status(local, workflow, instance)
        if status["status"] in states:
            return status
        time.sleep(0.3)
    raise AssertionError(f"{workflow}/{instance} still {status}; logs in {local['logs']}")


def test_pipeline_retries_a_transient_failure(local):
    from forge_runtime import cloudflare as cf

    text = "Forge builds Python edge workloads. " * 30
    instance = _start(local, "pipeline", {"id": "doc-7", "text": text, "flaky": 2})
    status = _wait(local, "pipeline", instance)
    assert status["status"] == "complete", status
    assert status["output"]["store"] == {"key": "docs/doc-7.json"}
    assert len(status["output"]["embed"]["vectors"]) == 3               # 150 words in chunks of 50
    stored = cf.r2("ARTIFACTS").get("docs/doc-7.json").json()
    assert stored["text"].startswith("Forge builds")
    assert cf.d1("DB").query("SELECT id, chunks FROM docs WHERE id = ?", ["doc-7"]) == [{"id": "doc-7", "chunks": 3}]
    assert cf.kv("SESSIONS").get_text("last-doc") == "doc-7"
    # the app's own route reads the same local storage
    assert requests.get(f"{local['app']}/docs?id=doc-7", timeout=5).json()["chunks"] == 3
    log = (local["logs"] / "app.out").read_text()
    assert log.count("/_forge/steps/extract") == 3                      # two failed attempts, then success


def test_permanent_failure_is_reported(local):
    instance = _start(local, "doomed", {"why": "spam"})
    status = _wait(local, "doomed", instance, timeout=30)
    assert status["status"] == "errored"
    assert "document rejected: spam" in json.dumps(status["error"])
    log = (local["logs"] / "app.out").read_text()
    assert log.count("/_forge/steps/check") == 1                        # not retried


def test_step_timeout_is_retried(local):
    instance = _start(local, "slow", {"id": "s1"})
    status = _wait(local, "slow", instance, timeout=60)
    assert status["status"] == "complete", status
    assert status["output"]["sleepy"]["attempts"] >= 2


def test_wait_for_event_and_sleep(local):
    instance = _start(local, "review", {})
    deadline = time.monotonic() + 30                                    # until the wait is reached
    while "approval" not in json.dumps(_status(local, "review", instance)) and time.monotonic() < deadline:
        time.sleep(0.3)
    r = requests.post(f"{local['mf']}/_forge/workflows/review/{instance}/events/approval", json={"by": "ana"},
                      headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert r.status_code == 202, r.text
    status = _wait(local, "review", instance, timeout=30)
    assert status["status"] == "complete" and status["output"]["publish"] == {"approved_by": "ana"}


def test_step_sleep(local):
    instance = _start(local, "nap", {})
    status = _wait(local, "nap", instance, timeout=30)
    assert status["status"] == "complete" and status["output"]["after"] == {"rested": True}


def test_workflow_routes_need_the_token(local):
    r = requests.post(f"{local['mf']}/_forge/workflows/pipeline", json={}, timeout=10)
    assert r.status_code == 401
    r = requests.post(f"{local['mf']}/_forge/workflows/pipeline", json={}, headers={"Authorization": "Bearer x"},
                      timeout=10)
    assert r.status_code == 401
    r = requests.get(f"{local['mf']}/_forge/steps/extract", timeout=10)
    assert r.status_code == 404                                          # never forwarded to the container
