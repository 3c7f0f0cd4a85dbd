"""TypeScript for the Worker of `forge deploy cloudflare` when the workload uses the platform:
`src/forge.ts` (the bindings' outbound handlers, the Workflow runner, the HTTP routes), the entry
`src/index.ts`, and `src/local.ts` + `wrangler.local.jsonc`: the same handlers and Workflows
without the container, which `wrangler dev` (Miniflare) runs as the local emulation of the
bindings that forge_runtime.cloudflare talks to outside Cloudflare.

The protocol is documented in docs/deploy.md ("The bindings' HTTP protocol").
"""

from __future__ import annotations

import json

from forge.deploy.cloudflare_platform import Platform

LOCAL_PORT = 8787

# The fixed part: protocol handlers and the workflow runner. The generated tables come first.
FORGE_TS_LIBRARY = r"""
// ---- protocol --------------------------------------------------------------------------------------
type Json = string | number | boolean | null | Json[] | { [key: string]: Json };
type Env = Record<string, unknown>;
export type OutboundHandler = (request: Request, env: unknown, ctx?: unknown) => Promise<Response>;

class ForgeError extends Error {
  constructor(public status: number, public code: string, message: string) {
    super(message);
  }
}

function errorResponse(binding: string, kind: string, status: number, code: string, message: string): Response {
  return Response.json({ error: { binding, kind, status, code, message } }, { status });
}

function bindingOf<T>(env: Env, name: string): T {
  const binding = env[name];
  if (binding === undefined || binding === null) {
    throw new ForgeError(500, "no_binding", `the Worker has no binding ${name}; add it to wrangler.jsonc (forge deploy cloudflare writes it)`);
  }
  return binding as T;
}

// "/keys/a%2Fb" -> "a/b" (the key is one percent-encoded path segment)
function itemKey(pathname: string, prefix: string): string | null {
  if (!pathname.startsWith(prefix) || pathname.length === prefix.length) return null;
  const raw = pathname.slice(prefix.length);
  if (raw.includes("/")) throw new ForgeError(400, "bad_key", "percent-encode the key as one path segment (/ is %2F)");
  return decodeURIComponent(raw);
}

function intParam(url: URL, name: string, min: number, max: number): number | undefined {
  const value = url.searchParams.get(name);
  if (value === null || value === "") return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new ForgeError(400, "bad_parameter", `${name}=${value}: a whole number from ${min} to ${max}`);
  }
  return n;
}

async function jsonBody(request: Request): Promise<{ [key: string]: Json }> {
  let doc: unknown;
  try {
    doc = await request.json();
  } catch {
    throw new ForgeError(400, "bad_json", "the request body is not JSON");
  }
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) {
    throw new ForgeError(400, "bad_json", "the request body must be a JSON object");
  }
  return doc as { [key: string]: Json };
}

function noRoute(request: Request, kind: string): never {
  throw new ForgeError(404, "no_route", `${request.method} ${new URL(request.url).pathname} is not part of the ${kind} protocol (see docs/deploy.md)`);
}

const NO_CONTENT = () => new Response(null, { status: 204 });

async function kvHandler(name: string, request: Request, env: Env): Promise<Response> {
  const ns = bindingOf<KVNamespace>(env, name);
  const url = new URL(request.url);
  if (url.pathname === "/keys" && request.method === "GET") {
    const listed = await ns.list({
      prefix: url.searchParams.get("prefix") ?? undefined,
      cursor: url.searchParams.get("cursor") ?? undefined,
      limit: intParam(url, "limit", 1, 1000),
    });
    const cursor = listed.list_complete ? null : (listed as { cursor?: string }).cursor ?? null;
    return Response.json({
      keys: listed.keys.map((k) => ({ name: k.name, expiration: k.expiration ?? null })),
      cursor,
      complete: listed.list_complete,
    });
  }
  const key = itemKey(url.pathname, "/keys/");
  if (key === null) noRoute(request, "kv");
  switch (request.method) {
    case "GET": {
      const value = await ns.get(key, "arrayBuffer");
      if (value === null) throw new ForgeError(404, "not_found", `no key ${JSON.stringify(key)}`);
      return new Response(value, { headers: { "content-type": "application/octet-stream" } });
    }
    case "PUT": {
      const ttl = intParam(url, "ttl", 60, 10 * 365 * 86400);
      const options: KVNamespacePutOptions = ttl === undefined ? {} : { expirationTtl: ttl };
      await ns.put(key, await request.arrayBuffer(), options);
      return NO_CONTENT();
    }
    case "DELETE":
      await ns.delete(key);
      return NO_CONTENT();
  }
  noRoute(request, "kv");
}

function objectHeaders(object: R2Object): Headers {
  const headers = new Headers();
  object.writeHttpMetadata(headers);
  headers.set("etag", object.httpEtag);
  headers.set("content-length", String(object.size));
  headers.set("last-modified", object.uploaded.toUTCString());
  for (const [k, v] of Object.entries(object.customMetadata ?? {})) headers.set(`x-forge-meta-${k}`, v);
  return headers;
}

async function r2Handler(name: string, request: Request, env: Env): Promise<Response> {
  const bucket = bindingOf<R2Bucket>(env, name);
  const url = new URL(request.url);
  if (url.pathname === "/objects" && request.method === "GET") {
    const listed = await bucket.list({
      prefix: url.searchParams.get("prefix") ?? undefined,
      cursor: url.searchParams.get("cursor") ?? undefined,
      delimiter: url.searchParams.get("delimiter") ?? undefined,
      limit: intParam(url, "limit", 1, 1000),
    });
    return Response.json({
      objects: listed.objects.map((o) => ({ key: o.key, size: o.size, etag: o.etag, uploaded: o.uploaded.toISOString() })),
      prefixes: listed.delimitedPrefixes,
      cursor: listed.truncated ? listed.cursor : null,
      complete: !listed.truncated,
    });
  }
  const key = itemKey(url.pathname, "/objects/");
  if (key === null) noRoute(request, "r2");
  switch (request.method) {
    case "GET": {
      const object = await bucket.get(key);
      if (object === null) throw new ForgeError(404, "not_found", `no object ${JSON.stringify(key)}`);
      return new Response(object.body, { headers: objectHeaders(object) });
    }
    case "HEAD": {
      const object = await bucket.head(key);
      if (object === null) return new Response(null, { status: 404 });
      return new Response(null, { headers: objectHeaders(object) });
    }
    case "PUT": {
      const customMetadata: Record<string, string> = {};
      for (const [k, v] of request.headers) if (k.startsWith("x-forge-meta-")) customMetadata[k.slice(13)] = v;
      const contentType = request.headers.get("content-type") ?? undefined;
      // A body of known length streams into R2; a chunked one is read first (R2 needs the length).
      const body = request.headers.has("content-length") ? request.body : await request.arrayBuffer();
      const object = await bucket.put(key, body, { httpMetadata: { contentType }, customMetadata });
      if (object === null) throw new ForgeError(412, "precondition_failed", "the object was not written");
      return Response.json({ key: object.key, size: object.size, etag: object.etag }, { status: 201 });
    }
    case "DELETE":
      await bucket.delete(key);
      return NO_CONTENT();
  }
  noRoute(request, "r2");
}

function d1Params(doc: { [key: string]: Json }): Json[] {
  const params = doc.params ?? [];
  if (!Array.isArray(params)) throw new ForgeError(400, "bad_params", "params must be a JSON array");
  return params;
}

function d1Statement(db: D1Database, doc: { [key: string]: Json }): D1PreparedStatement {
  if (typeof doc.sql !== "string" || doc.sql === "") throw new ForgeError(400, "bad_sql", "sql must be a non-empty string");
  const params = d1Params(doc);
  const statement = db.prepare(doc.sql);
  return params.length ? statement.bind(...params) : statement;
}

async function d1Handler(name: string, request: Request, env: Env): Promise<Response> {
  const db = bindingOf<D1Database>(env, name);
  const url = new URL(request.url);
  if (request.method !== "POST") noRoute(request, "d1");
  try {
    if (url.pathname === "/query") {
      const result = await d1Statement(db, await jsonBody(request)).all();
      return Response.json({ results: result.results, meta: result.meta });
    }
    if (url.pathname === "/batch") {
      const doc = await jsonBody(request);
      if (!Array.isArray(doc.statements)) throw new ForgeError(400, "bad_batch", "statements must be a list of {sql, params}");
      const statements = doc.statements.map((s) => {
        if (typeof s !== "object" || s === null || Array.isArray(s)) throw new ForgeError(400, "bad_batch", "each statement is {sql, params}");
        return d1Statement(db, s);
      });
      const results = await db.batch(statements);
      return Response.json({ results: results.map((r) => ({ results: r.results, meta: r.meta })) });
    }
  } catch (error) {
    if (error instanceof ForgeError) throw error;
    throw new ForgeError(400, "query_failed", error instanceof Error ? error.message : String(error));
  }
  noRoute(request, "d1");
}

type QueueMessage = { body: Json; delaySeconds?: number; contentType?: QueueContentType };

function queueMessage(doc: Json): QueueMessage {
  if (typeof doc !== "object" || doc === null || Array.isArray(doc) || !("body" in doc)) {
    throw new ForgeError(400, "bad_message", "a message is {\"body\": ..., \"delaySeconds\"?: n}");
  }
  const message: QueueMessage = { body: doc.body, contentType: "json" };
  if (doc.delaySeconds !== undefined) {
    const delay = doc.delaySeconds;
    if (typeof delay !== "number" || !Number.isInteger(delay) || delay < 0 || delay > 43200) {
      throw new ForgeError(400, "bad_delay", "delaySeconds: a whole number from 0 to 43200");
    }
    message.delaySeconds = delay;
  }
  return message;
}

async function queueHandler(name: string, request: Request, env: Env): Promise<Response> {
  const queue = bindingOf<Queue>(env, name);
  const url = new URL(request.url);
  if (request.method === "POST" && url.pathname === "/send") {
    const m = queueMessage(await jsonBody(request));
    await queue.send(m.body, { contentType: m.contentType, delaySeconds: m.delaySeconds });
    return Response.json({ sent: 1 }, { status: 202 });
  }
  if (request.method === "POST" && url.pathname === "/send-batch") {
    const doc = await jsonBody(request);
    if (!Array.isArray(doc.messages) || doc.messages.length === 0 || doc.messages.length > 100) {
      throw new ForgeError(400, "bad_batch", "messages: a list of 1 to 100 {\"body\": ...}");
    }
    const messages = doc.messages.map(queueMessage);
    await queue.sendBatch(messages);
    return Response.json({ sent: messages.length }, { status: 202 });
  }
  noRoute(request, "queue");
}

type AiRunner = { run(model: string, inputs: unknown, options?: unknown): Promise<unknown> };

async function aiHandler(name: string, request: Request, env: Env): Promise<Response> {
  const ai = bindingOf<AiRunner>(env, name);
  const url = new URL(request.url);
  if (request.method !== "POST" || url.pathname !== "/run") noRoute(request, "ai");
  const doc = await jsonBody(request);
  if (typeof doc.model !== "string" || doc.model === "") throw new ForgeError(400, "bad_model", "model must be a model name such as @cf/meta/llama-3.1-8b-instruct");
  let result: unknown;
  try {
    result = await ai.run(doc.model, doc.inputs ?? {}, doc.options ?? undefined);
  } catch (error) {
    throw new ForgeError(502, "ai_failed", error instanceof Error ? error.message : String(error));
  }
  if (result instanceof ReadableStream) {
    return new Response(result, { headers: { "content-type": "text/event-stream" } });
  }
  return Response.json({ result });
}

const KIND_HANDLERS: Record<string, (name: string, request: Request, env: Env) => Promise<Response>> = {
  kv: kvHandler,
  r2: r2Handler,
  d1: d1Handler,
  queue: queueHandler,
  ai: aiHandler,
};

/** host -> handler, for `Container.outboundByHost` (and the local emulation). */
export function outboundHandlers(): Record<string, OutboundHandler> {
  const handlers: Record<string, OutboundHandler> = {};
  for (const b of BINDINGS) {
    const handle = KIND_HANDLERS[b.kind];
    handlers[b.host] = async (request: Request, env: unknown) => {
      try {
        return await handle(b.name, request, env as Env);
      } catch (error) {
        if (error instanceof ForgeError) return errorResponse(b.name, b.kind, error.status, error.code, error.message);
        const message = error instanceof Error ? error.message : String(error);
        return errorResponse(b.name, b.kind, 502, "binding_error", message);
      }
    };
  }
  return handlers;
}

// ---- workflows -------------------------------------------------------------------------------------
type StepControl = { sleep?: string; wait?: string; timeout?: string; output?: Json; failed?: string };

function stepControl(output: Json): StepControl | null {
  if (typeof output === "object" && output !== null && !Array.isArray(output) && "$forge" in output) {
    const c = output["$forge"];
    if (typeof c === "object" && c !== null && !Array.isArray(c)) return c as StepControl;
  }
  return null;
}

/** Run one workflow's steps; `send` delivers one step request to the container. */
export async function runSteps(
  workflow: string,
  event: Readonly<WorkflowEvent<unknown>>,
  step: WorkflowStep,
  send: (request: Request) => Promise<Response>,
): Promise<Json> {
  const spec = WORKFLOWS[workflow];
  const outputs: { [step: string]: Json } = {};
  for (const s of spec.steps) {
    const config: WorkflowStepConfig = {
      retries: { limit: s.retries, delay: s.delay as WorkflowSleepDuration, backoff: s.backoff },
      timeout: s.timeout as WorkflowSleepDuration,
    };
    // The step's result is kept as its JSON text (what Workflows persists and replays).
    const result: string = await step.do(s.name, config, async (ctx): Promise<string> => {
      const request = new Request(`http://container/_forge/steps/${encodeURIComponent(s.name)}`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "x-forge-workflow": workflow,
          "x-forge-instance": event.instanceId,
          "x-forge-step-timeout": String(s.timeoutSeconds),
        },
        body: JSON.stringify({ params: (event.payload ?? null) as Json, outputs, attempt: ctx?.attempt ?? null }),
      });
      const response = await send(request);
      const text = await response.text();
      if (response.ok) return text === "" ? "null" : text;
      let message = text;
      let retry = true;
      try {
        const err = JSON.parse(text).error;
        message = err.message ?? text;
        retry = err.retry !== false;
      } catch {
        // not JSON: keep the text
      }
      const detail = `step ${s.name}: HTTP ${response.status}: ${message}`;
      // A permanent failure ends the step without retries; the instance then fails with its message.
      if (!retry) return JSON.stringify({ $forge: { failed: detail } });
      throw new Error(detail);
    });
    let output = JSON.parse(result) as Json;
    const control = stepControl(output);
    if (control?.failed) {
      throw new Error(control.failed);
    }
    if (control?.sleep) {
      await step.sleep(`${s.name}: sleep`, control.sleep as WorkflowSleepDuration);
      output = control.output ?? null;
    } else if (control?.wait) {
      const received = await step.waitForEvent<Record<string, string>>(`${s.name}: wait for ${control.wait}`, {
        type: control.wait,
        timeout: (control.timeout ?? "24 hours") as WorkflowSleepDuration,
      });
      output = received.payload as unknown as Json;
    }
    outputs[s.name] = output;
  }
  return outputs;
}

function authorized(request: Request, env: Env): Response | null {
  const token = env.FORGE_WORKFLOW_TOKEN;
  if (typeof token !== "string" || token === "") {
    return Response.json({ error: { status: 503, code: "no_token", message: "set the secret FORGE_WORKFLOW_TOKEN (npx wrangler secret put FORGE_WORKFLOW_TOKEN) to use the workflow routes" } }, { status: 503 });
  }
  const given = request.headers.get("authorization") ?? "";
  const expected = `Bearer ${token}`;
  let diff = given.length ^ expected.length;
  for (let i = 0; i < expected.length; i++) diff |= expected.charCodeAt(i) ^ (given.charCodeAt(i) || 0);
  if (diff !== 0) return Response.json({ error: { status: 401, code: "unauthorized", message: "Authorization: Bearer <FORGE_WORKFLOW_TOKEN> required" } }, { status: 401 });
  return null;
}

/** /_forge/... on the Worker: the workflow routes; anything else under /_forge/ is never forwarded. */
export async function forgeRoutes(request: Request, env: Env): Promise<Response | null> {
  const url = new URL(request.url);
  if (!url.pathname.startsWith("/_forge/")) return null;
  const parts = url.pathname.split("/").slice(2).map(decodeURIComponent); // ["workflows", name, id?, "events"?, type?]
  if (parts[0] !== "workflows" || !parts[1] || !(parts[1] in WORKFLOWS)) {
    return Response.json({ error: { status: 404, code: "not_found", message: "no such forge route" } }, { status: 404 });
  }
  const denied = authorized(request, env);
  if (denied) return denied;
  const workflow = env[WORKFLOWS[parts[1]].binding] as Workflow;
  try {
    if (parts.length === 2 && request.method === "POST") {
      const text = await request.text();
      const params = text ? JSON.parse(text) : {};
      const id = url.searchParams.get("id") ?? undefined;
      const instance = await workflow.create(id ? { id, params } : { params });
      return Response.json({ id: instance.id, status: await instance.status() }, { status: 201 });
    }
    if (parts.length === 3 && request.method === "GET") {
      const instance = await workflow.get(parts[2]);
      return Response.json({ id: instance.id, status: await instance.status() });
    }
    if (parts.length === 5 && parts[3] === "events" && request.method === "POST") {
      const instance = await workflow.get(parts[2]);
      const text = await request.text();
      await instance.sendEvent({ type: parts[4], payload: text ? JSON.parse(text) : null });
      return Response.json({ id: instance.id, sent: parts[4] }, { status: 202 });
    }
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    return Response.json({ error: { status: 400, code: "workflow_error", message } }, { status: 400 });
  }
  return Response.json({ error: { status: 405, code: "no_route", message: "POST /_forge/workflows/NAME, GET /_forge/workflows/NAME/ID, POST /_forge/workflows/NAME/ID/events/TYPE" } }, { status: 405 });
}
"""


# The Container class's lifecycle hooks, the same in both emitted Workers (with and without the
# platform bridge).
CONTAINER_LIFECYCLE_TS = """  override onStart(): void {
    console.log("forge container started");
  }

  override onStop(params: { exitCode: number; reason: string }): void {
    console.log(`forge container stopped: exit ${params.exitCode} (${params.reason})`);
  }

  override onError(error: unknown): unknown {
    console.error("forge container error", error);
    throw error;
  }
"""


# @cloudflare/containers' defaults for starting an instance (its dist/lib/container.js): 8 s to get and
# start the instance, 20 s for the port to answer, polled every 300 ms. containerFetch() passes only an
# abort signal, so the class fills in forge's limits for every start.
INSTANCE_START_MS = 8_000
PORT_READY_CAP_MS = 20_000
PORT_POLL_MS = 100


def start_limits(request_timeout: float) -> dict:
    """The Container class's start-time limits (CancellationOptions of startAndWaitForPorts), matched to
    the request watchdog: a container whose port does not answer within the request timeout (at most
    the platform's 20 s) fails the start instead of holding the request past the time the runtime would
    give it. forge binaries listen within tens of ms, so the port is polled every 100 ms, not 300."""
    return {"instanceGetTimeoutMS": INSTANCE_START_MS,
            "portReadyTimeoutMS": min(PORT_READY_CAP_MS, max(1000, int(request_timeout * 1000))),
            "waitInterval": PORT_POLL_MS}


def container_start_ts(request_timeout: float) -> str:
    """The Container class's startAndWaitForPorts override applying start_limits() (explicit options a
    caller passes still win)."""
    limits = json.dumps(start_limits(request_timeout))
    return f"""  // Start-time limits, matched to the request timeout ({_secs(request_timeout)} s): instance start, port ready, poll.
  static readonly startLimits = {limits};

  override async startAndWaitForPorts(
    ...[ports, cancellationOptions, startOptions]: Parameters<Container["startAndWaitForPorts"]>
  ): Promise<void> {{
    const limits = (this.constructor as typeof Container & {{ startLimits: object }}).startLimits;
    if (ports !== undefined && typeof ports === "object" && !Array.isArray(ports)) {{
      return super.startAndWaitForPorts({{ ...ports, cancellationOptions: {{ ...limits, ...ports.cancellationOptions }} }});
    }}
    return super.startAndWaitForPorts(ports, {{ ...limits, ...cancellationOptions }}, startOptions);
  }}

"""


def _header(version: str) -> str:
    from forge.deploy.cloudflare import HEADER

    return "// " + HEADER.format(version=version)


def render_forge_ts(platform: Platform, version: str) -> str:
    bindings = [{"kind": b.kind, "name": b.name, "host": b.host} for b in platform.bindings]
    workflows = {wf.name: {"binding": wf.binding, "className": wf.class_name,
                           "steps": [s.config() for s in wf.steps]} for wf in platform.workflows}
    return f"""{_header(version)}
// The workload's platform: its bindings, reached from the container over HTTP through outboundByHost
// handlers (protocol: docs/deploy.md in forge), and its Workflows, whose steps run in the container.
import type {{ WorkflowEvent, WorkflowStep, WorkflowStepConfig, WorkflowSleepDuration }} from "cloudflare:workers";

export const BINDINGS: {{ kind: string; name: string; host: string }}[] = {json.dumps(bindings, indent=2)};

type StepSpec = {{
  name: string;
  retries: number;
  backoff: "constant" | "linear" | "exponential";
  delay: string | number;
  timeout: string | number;
  timeoutSeconds: number;
}};

export const WORKFLOWS: Record<string, {{ binding: string; className: string; steps: StepSpec[] }}> = {json.dumps(workflows, indent=2)};
{FORGE_TS_LIBRARY}"""


def _workflow_classes(platform: Platform, send: str) -> str:
    out = []
    for wf in platform.workflows:
        out.append(f"""
export class {wf.class_name} extends WorkflowEntrypoint<Env, unknown> {{
  async run(event: Readonly<WorkflowEvent<unknown>>, step: WorkflowStep) {{
    return runSteps({json.dumps(wf.name)}, event, step, (request) => {send});
  }}
}}
""")
    return "".join(out)


def render_index_ts(settings, platform: Platform, port: int, version: str, class_name: str, binding: str) -> str:
    env = json.dumps(dict(sorted({**settings.env, "FORGE_REQUEST_TIMEOUT": _secs(platform.request_timeout)}.items())),
                     indent=2).replace("\n", "\n  ")
    allowed = platform.container_allowed_hosts()
    allowed_line = (f"  // Only these hosts are reachable (allowed_hosts + the bindings' hosts).\n"
                    f"  allowedHosts = {json.dumps(allowed)};\n" if allowed is not None else "")
    n = settings.max_instances
    pick = (f"getRandom(env.{binding} as DurableObjectNamespace<{class_name}>, {n})" if n > 1 else
            f"Promise.resolve(getContainer(env.{binding} as DurableObjectNamespace<{class_name}>))")
    imports = ["Container", "getContainer" if n == 1 else "getRandom"]
    if platform.bindings:
        imports.append("ContainerProxy")
    wf_import = ('import { WorkflowEntrypoint, type WorkflowEvent, type WorkflowStep } from "cloudflare:workers";\n'
                 if platform.workflows else "")
    outbound = (f"// Each binding answers the container on its own virtual host (see BINDINGS in forge.ts).\n"
                f"{class_name}.outboundByHost = outboundHandlers();\n" if platform.bindings else "")
    exports = "// Outbound interception runs through this entrypoint (@cloudflare/containers needs it exported).\nexport { ContainerProxy };\n" if platform.bindings else ""
    sleep = json.dumps(settings.sleep_after)
    return f"""{_header(version)}
import {{ {', '.join(imports)} }} from "@cloudflare/containers";
{wf_import}import {{ forgeRoutes, outboundHandlers, runSteps }} from "./forge";

type Env = Record<string, unknown>;

// One Durable Object per container instance; each runs the forge image.
export class {class_name} extends Container {{
  // The port the forge runtime listens on inside the image (PORT in the image config).
  defaultPort = {port};
  // Stop an idle container after this long (SIGTERM); the next request starts it again. forge keeps it
  // longer than the request timeout ({_secs(platform.request_timeout)} s) and the longest step.
  sleepAfter = {sleep};
  // Environment of the process in the container: [tool.forge.cloudflare] env, and the request
  // timeout the forge runtime enforces (FORGE_REQUEST_TIMEOUT, from [tool.forge] request_timeout).
  envVars = {env};
  // Egress: {"open to the internet" if platform.enable_internet else "deny by default; the bindings' hosts are served by the Worker"}
  // (enable_internet / allowed_hosts in [tool.forge.cloudflare]).
  enableInternet = {json.dumps(platform.enable_internet)};
{allowed_line}
{container_start_ts(platform.request_timeout)}{CONTAINER_LIFECYCLE_TS}}}

{outbound}{exports}
function container(env: Env) {{
  return {pick};
}}
{_workflow_classes(platform, "container(this.env).then((c) => c.fetch(request))")}
export default {{
  async fetch(request: Request, env: Env): Promise<Response> {{
    // /_forge/... is answered here (workflow routes) and never reaches the container.
    const routed = await forgeRoutes(request, env);
    if (routed) return routed;
    return (await container(env)).fetch(request);
  }},
}} satisfies ExportedHandler<Env>;
"""


def render_local_ts(platform: Platform, version: str) -> str:
    wf_import = ('import { WorkflowEntrypoint, type WorkflowEvent, type WorkflowStep } from "cloudflare:workers";\n'
                 if platform.workflows else "")
    return f"""{_header(version)}
// The local emulation: the same binding handlers and Workflows as src/index.ts, without the container.
// `npm run bindings` runs it under `wrangler dev` (Miniflare, local KV/R2/D1/Queues storage in
// .wrangler/state). A forge workload run locally with FORGE_CLOUDFLARE_URL=http://127.0.0.1:{LOCAL_PORT}
// reaches its bindings here; Workflow steps go to FORGE_LOCAL_CONTAINER_URL (the workload, run locally).
{wf_import}import {{ forgeRoutes, outboundHandlers, runSteps }} from "./forge";

type Env = Record<string, unknown>;
const handlers = outboundHandlers();

function toContainer(env: Env, request: Request): Promise<Response> {{
  const base = env.FORGE_LOCAL_CONTAINER_URL;
  if (typeof base !== "string" || base === "") {{
    return Promise.resolve(new Response("FORGE_LOCAL_CONTAINER_URL is not set", {{ status: 503 }}));
  }}
  const url = new URL(request.url);
  return fetch(new URL(url.pathname + url.search, base), request);
}}
{_workflow_classes(platform, "toContainer(this.env, request)")}
export default {{
  async fetch(request: Request, env: Env): Promise<Response> {{
    const host = (request.headers.get("x-forge-host") ?? request.headers.get("host") ?? "").split(":")[0].toLowerCase();
    const handler = handlers[host];
    if (handler) return handler(request, env);
    if (host.endsWith(".forge.internal")) {{
      return Response.json({{ error: {{ status: 404, code: "no_binding", message: `no binding answers on ${{host}}: declare it in [tool.forge.cloudflare] bindings and run forge deploy cloudflare again` }} }}, {{ status: 404 }});
    }}
    const routed = await forgeRoutes(request, env);
    if (routed) return routed;
    if (env.FORGE_LOCAL_CONTAINER_URL) return toContainer(env, request);
    return new Response(`forge local emulation: no binding answers on ${{host}}`, {{ status: 404 }});
  }},
}} satisfies ExportedHandler<Env>;
"""


def _secs(value: float) -> str:
    return f"{value:g}"


def bindings_config(platform: Platform) -> dict:
    out: dict = {}
    for b in platform.bindings:
        key, entry = b.wrangler()
        if key == "ai":
            out["ai"] = entry
        elif key == "queues":
            out.setdefault("queues", {"producers": []})["producers"].append(entry)
        else:
            out.setdefault(key, []).append(entry)
    return out


def workflows_config(platform: Platform, worker: str) -> list[dict]:
    return [{"name": wf.wrangler_name(worker), "binding": wf.binding, "class_name": wf.class_name}
            for wf in platform.workflows]


def local_config(settings, platform: Platform) -> dict:
    """wrangler.local.jsonc: src/local.ts with the same bindings and workflows, no container. Workers AI
    has no local emulation (wrangler would ask for an account), so it is left out here."""
    config = {
        "$schema": "node_modules/wrangler/config-schema.json",
        "name": f"{settings.name}-local"[:63],
        "main": "src/local.ts",
        "compatibility_date": settings.compatibility_date,
        **{k: v for k, v in bindings_config(platform).items() if k != "ai"},
        "vars": {"FORGE_LOCAL_CONTAINER_URL": "http://127.0.0.1:8080", "FORGE_WORKFLOW_TOKEN": "local"},
        "dev": {"port": LOCAL_PORT, "ip": "127.0.0.1"},
    }
    if platform.workflows:
        config["workflows"] = workflows_config(platform, settings.name)
    return config
