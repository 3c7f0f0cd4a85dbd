"""A document pipeline on Cloudflare: a Workflow (extract -> embed -> store) whose steps run here, in
the forge container, and reach KV, R2, D1, Queues and Workers AI through forge_runtime.cloudflare.

    forge deploy cloudflare --project examples/pipeline --image docker.io/you/pipeline:v1
    curl -X POST -H "Authorization: Bearer $TOKEN" https://WORKER/_forge/workflows/pipeline \
         -d '{"id": "doc-1", "text": "Hello, edge."}'
    curl -H "Authorization: Bearer $TOKEN" https://WORKER/_forge/workflows/pipeline/INSTANCE

`params` is the JSON the instance was started with; `outputs` holds the earlier steps' results.
"""

import hashlib
import json

import forge_runtime
from forge_runtime import cloudflare

_attempts = {}


@forge_runtime.step("extract", retries=3, backoff="exponential", delay="1 second", timeout="5 minutes")
def extract(params, outputs):
    # "flaky": N simulates a source that fails the first N attempts (the Workflow retries the step).
    key = params["id"]
    _attempts[key] = _attempts.get(key, 0) + 1
    if _attempts[key] <= params.get("flaky", 0):
        raise ConnectionError(f"source unavailable (attempt {_attempts[key]})")
    text = " ".join(params["text"].split())
    if not text:
        raise cloudflare.StepFailed("the document is empty")          # permanent: no retry helps
    words = text.split()
    return {"text": text, "chunks": [" ".join(words[i:i + 50]) for i in range(0, len(words), 50)]}


@forge_runtime.step("embed", retries=2, delay="1 second", timeout="2 minutes")
def embed(params, outputs):
    chunks = outputs["extract"]["chunks"]
    try:
        result = cloudflare.ai().run("@cf/baai/bge-small-en-v1.5", {"text": chunks})
        vectors = result.get("data") if isinstance(result, dict) else None
    except cloudflare.BindingUnavailable:
        vectors = None
    if not vectors:   # no Workers AI here (local runs): a stand-in vector per chunk
        vectors = [[b / 255 for b in hashlib.sha256(c.encode()).digest()[:8]] for c in chunks]
    return {"vectors": vectors}


@forge_runtime.step("store", retries=3, delay="1 second", timeout="1 minute")
def store(params, outputs):
    doc_id = params["id"]
    key = f"docs/{doc_id}.json"
    body = json.dumps({"text": outputs["extract"]["text"], "vectors": outputs["embed"]["vectors"]})
    cloudflare.r2("ARTIFACTS").put(key, body, content_type="application/json")
    db = cloudflare.d1("DB")
    db.execute("CREATE TABLE IF NOT EXISTS docs (id TEXT PRIMARY KEY, r2_key TEXT, chunks INTEGER)")
    db.execute("INSERT OR REPLACE INTO docs (id, r2_key, chunks) VALUES (?, ?, ?)",
               [doc_id, key, len(outputs["extract"]["chunks"])])
    cloudflare.queue("EVENTS").send({"event": "stored", "id": doc_id, "key": key})
    cloudflare.kv("SESSIONS").put("last-doc", doc_id, ttl=3600)
    return {"key": key}


def app(request):
    """The HTTP side: look a stored document up."""
    doc_id = request.query.get("id")
    if request.path == "/docs" and doc_id:
        rows = cloudflare.d1("DB").query("SELECT id, r2_key, chunks FROM docs WHERE id = ?", [doc_id])
        return rows[0] if rows else forge_runtime.Response("not found\n", status=404)
    return "pipeline: POST /_forge/workflows/pipeline on the Worker starts a run\n"
