"""The Cloudflare platform around the container: bindings (KV, R2, D1, Queues, Workers AI) reached
through `outboundByHost` handlers, egress settings, durable Workflows whose steps run in the
container, and the request timeout the Container class is sized for.

Settings are checked here (all problems at once, as `load_settings` does for the rest); the
TypeScript the Worker needs is rendered by `forge.deploy.cloudflare_worker`.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

from forge.config import suggest

KINDS = ("kv", "r2", "d1", "queue", "ai")
VIRTUAL_DOMAIN = "forge.internal"
# kind: (required resource keys, optional keys) besides `kind` and `name`
KIND_KEYS = {
    "kv": (("id",), ()),
    "r2": (("bucket",), ("jurisdiction",)),
    "d1": (("id",), ("database",)),
    "queue": (("queue",), ()),
    "ai": ((), ()),
}
RESERVED_NAMES = ("FORGE_CONTAINER", "FORGE_WORKFLOW_TOKEN", "FORGE_LOCAL_CONTAINER_URL")
_BINDING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_KV_ID = re.compile(r"^[0-9a-f]{32}$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_BUCKET = re.compile(r"^[a-z0-9](?:[a-z0-9-]{1,61}[a-z0-9])$")
_QUEUE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_D1_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9_-]{0,62})$")
_HOST_GLOB = re.compile(r"^(\*\.)?[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?(?::[0-9]{1,5})?$")
_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|millisecond|milliseconds|s|sec|second|seconds|"
                       r"m|min|minute|minutes|h|hour|hours|d|day|days|w|week|weeks)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "millisecond": 0.001, "milliseconds": 0.001, "s": 1, "sec": 1, "second": 1,
                 "seconds": 1, "m": 60, "min": 60, "minute": 60, "minutes": 60, "h": 3600, "hour": 3600,
                 "hours": 3600, "d": 86400, "day": 86400, "days": 86400, "w": 604800, "week": 604800,
                 "weeks": 604800}
BACKOFFS = ("constant", "linear", "exponential")
STEP_KEYS = ("retries", "backoff", "delay", "timeout", "workflow")
DEFAULT_REQUEST_TIMEOUT = 60.0


def parse_duration(value) -> float | None:
    """'5 minutes', '30s', '1 hour', or a number of seconds -> seconds; None if not a duration."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if value > 0 else None
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m and float(m.group(1)) > 0:
            return float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
    return None


def workflows_duration(seconds: float) -> str | int:
    """Seconds as the Workflows API writes durations ("30 seconds", "5 minutes"; a number is milliseconds)."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds >= size and seconds % size == 0:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return max(1, round(seconds * 1000))


@dataclass(frozen=True)
class Binding:
    kind: str
    name: str
    resource: dict            # the kind's resource keys, as written

    @property
    def host(self) -> str:
        return virtual_host(self.kind, self.name)

    def wrangler(self) -> tuple[str, dict]:
        """(wrangler config key, one entry of it)."""
        r = self.resource
        if self.kind == "kv":
            return "kv_namespaces", {"binding": self.name, "id": r["id"]}
        if self.kind == "r2":
            entry = {"binding": self.name, "bucket_name": r["bucket"]}
            if r.get("jurisdiction"):
                entry["jurisdiction"] = r["jurisdiction"]
            return "r2_buckets", entry
        if self.kind == "d1":
            return "d1_databases", {"binding": self.name, "database_id": r["id"],
                                    "database_name": r.get("database") or self.name.lower().replace("_", "-")}
        if self.kind == "queue":
            return "queues", {"binding": self.name, "queue": r["queue"]}
        return "ai", {"binding": self.name}

    @property
    def resource_label(self) -> str:
        r = self.resource
        return {"kv": lambda: f"namespace {r['id']}", "r2": lambda: f"bucket {r['bucket']}",
                "d1": lambda: f"database {r['id']}", "queue": lambda: f"queue {r['queue']}",
                "ai": lambda: "Workers AI"}[self.kind]()


def virtual_host(kind: str, name: str) -> str:
    """The host a binding answers on inside the container: SESSIONS (kv) -> sessions.kv.forge.internal.
    forge_runtime.cloudflare computes the same name."""
    return f"{name.lower().replace('_', '-')}.{kind}.{VIRTUAL_DOMAIN}"


@dataclass(frozen=True)
class Step:
    name: str
    retries: int = 0
    backoff: str = "exponential"
    delay: float = 10.0
    timeout: float = 600.0
    workflow: str = "pipeline"
    where: str = ""

    def config(self) -> dict:
        return {"name": self.name, "retries": self.retries, "backoff": self.backoff,
                "delay": workflows_duration(self.delay), "timeout": workflows_duration(self.timeout),
                "timeoutSeconds": self.timeout}


@dataclass(frozen=True)
class Workflow:
    name: str
    steps: tuple[Step, ...]

    @property
    def class_name(self) -> str:
        return "Forge" + "".join(p.capitalize() for p in re.split(r"[^A-Za-z0-9]+", self.name) if p) + "Workflow"

    @property
    def binding(self) -> str:
        return "FORGE_WORKFLOW_" + re.sub(r"[^A-Z0-9]+", "_", self.name.upper()).strip("_")

    def wrangler_name(self, worker: str) -> str:
        return f"{worker}-{re.sub(r'[^a-z0-9]+', '-', self.name.lower()).strip('-')}"[:63].strip("-")


@dataclass(frozen=True)
class Platform:
    bindings: tuple[Binding, ...] = ()
    enable_internet: bool = False
    allowed_hosts: tuple[str, ...] = ()
    workflows: tuple[Workflow, ...] = ()
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT

    @property
    def used(self) -> bool:
        return bool(self.bindings or self.workflows)

    def container_allowed_hosts(self) -> list[str] | None:
        """allowedHosts for the Container: None (not set) unless the settings name hosts; when set,
        it is a whitelist that also gates the outbound handlers, so the bindings' hosts are added."""
        if not self.allowed_hosts:
            return None
        return list(self.allowed_hosts) + [b.host for b in self.bindings if b.host not in self.allowed_hosts]


def parse_bindings(table, problems: list[str]) -> tuple[Binding, ...]:
    if table is None:
        return ()
    if not isinstance(table, list) or not all(isinstance(b, dict) for b in table):
        problems.append(f"bindings = {table!r}: a list of tables, e.g. bindings = [{{ kind = \"kv\", "
                        "name = \"SESSIONS\", id = \"<namespace id>\" }}]")
        return ()
    out: list[Binding] = []
    seen: dict[str, str] = {}
    for i, entry in enumerate(table):
        label = f"bindings[{i}]"
        kind = entry.get("kind")
        name = entry.get("name")
        if isinstance(name, str):
            label = f"binding {name!r}"
        if kind not in KINDS:
            problems.append(f"{label}: kind = {kind!r} is not a binding kind forge connects; use one of "
                            f"{', '.join(KINDS)}{suggest(kind, KINDS)}" if kind is not None else
                            f"{label}: no kind; use one of {', '.join(KINDS)}")
            continue
        required, optional = KIND_KEYS[kind]
        known = ("kind", "name", *required, *optional)
        for key in entry:
            if key not in known:
                problems.append(f"{label}: unknown key {key!r} for a {kind} binding{suggest(key, known)} "
                                f"(a {kind} binding has {', '.join(known)})")
        if kind == "ai" and name is None:
            name = "AI"
        if not isinstance(name, str) or not _BINDING_NAME.match(name):
            problems.append(f"{label}: name = {name!r}: a binding name is letters, digits and _, not starting "
                            "with a digit (it becomes env.NAME in the Worker), e.g. \"SESSIONS\"")
            continue
        if name in RESERVED_NAMES or name.startswith("FORGE_WORKFLOW_"):
            problems.append(f"{label}: the name {name} is forge's own; choose another")
            continue
        folded = name.lower().replace("_", "-")
        if folded in seen:
            problems.append(f"{label}: the name is used twice ({seen[folded]} and {name}); binding names must "
                            "differ in more than case, since each becomes a host name")
            continue
        seen[folded] = name
        bad = False
        for key in required:
            if key not in entry:
                problems.append(f"{label}: a {kind} binding needs {key}{_resource_hint(kind, key)}")
                bad = True
        if bad:
            continue
        resource = {k: entry[k] for k in (*required, *optional) if k in entry}
        problem = _check_resource(kind, resource)
        if problem:
            problems.append(f"{label}: {problem}")
            continue
        out.append(Binding(kind, name, resource))
    if sum(b.kind == "ai" for b in out) > 1:
        problems.append("bindings: more than one ai binding; one Workers AI binding serves every model")
    return tuple(out)


def _resource_hint(kind: str, key: str) -> str:
    return {
        ("kv", "id"): " (the namespace id from `npx wrangler kv namespace create NAME`: 32 hex digits)",
        ("r2", "bucket"): " (the bucket name from `npx wrangler r2 bucket create NAME`)",
        ("d1", "id"): " (the database id, a UUID, from `npx wrangler d1 create NAME`)",
        ("queue", "queue"): " (the queue name from `npx wrangler queues create NAME`)",
    }.get((kind, key), "")


def _check_resource(kind: str, r: dict) -> str | None:
    if kind == "kv" and not (isinstance(r["id"], str) and _KV_ID.match(r["id"])):
        return (f"id = {r['id']!r} is not a KV namespace id: 32 lowercase hex digits, as "
                "`npx wrangler kv namespace create NAME` prints")
    if kind == "r2":
        if not (isinstance(r["bucket"], str) and _BUCKET.match(r["bucket"])):
            return (f"bucket = {r['bucket']!r} is not an R2 bucket name: 3-63 lowercase letters, digits and "
                    "dashes, not starting or ending with a dash")
        if "jurisdiction" in r and r["jurisdiction"] not in ("eu", "fedramp"):
            return f"jurisdiction = {r['jurisdiction']!r}: \"eu\" or \"fedramp\""
    if kind == "d1":
        if not (isinstance(r["id"], str) and _UUID.match(r["id"])):
            return (f"id = {r['id']!r} is not a D1 database id: a UUID such as "
                    "\"4f4a7c2e-0000-4000-8000-000000000000\", as `npx wrangler d1 create NAME` prints")
        if "database" in r and not (isinstance(r["database"], str) and _D1_NAME.match(r["database"])):
            return f"database = {r['database']!r}: a D1 database name is lowercase letters, digits, - and _"
    if kind == "queue" and not (isinstance(r["queue"], str) and _QUEUE.match(r["queue"])):
        return (f"queue = {r['queue']!r} is not a queue name: 1-63 lowercase letters, digits and dashes, "
                "not starting or ending with a dash")
    return None


def parse_egress(table: dict, bindings, problems: list[str]) -> tuple[bool, tuple[str, ...]]:
    enable = table.get("enable_internet", False)
    if not isinstance(enable, bool):
        problems.append(f"enable_internet = {enable!r}: true or false")
        enable = False
    hosts = table.get("allowed_hosts", [])
    if not isinstance(hosts, list) or not all(isinstance(h, str) for h in hosts):
        problems.append(f"allowed_hosts = {hosts!r}: a list of host names or globs such as \"api.stripe.com\" "
                        "or \"*.example.com\"")
        hosts = []
    for h in hosts:
        if not _HOST_GLOB.match(h):
            problems.append(f"allowed_hosts: {h!r} is not a host name or a glob such as \"*.example.com\"")
    return enable, tuple(hosts)


def parse_request_timeout(forge_tool: dict, problems: list[str]) -> float:
    value = forge_tool.get("request_timeout", DEFAULT_REQUEST_TIMEOUT)
    seconds = parse_duration(value)
    if seconds is None or seconds > 3600:
        problems.append(f"[tool.forge] request_timeout = {value!r}: a duration up to 1 hour, such as 30 "
                        "(seconds), \"30s\" or \"2 minutes\"")
        return DEFAULT_REQUEST_TIMEOUT
    return seconds


# --- steps, found in the source without running it -----------------------------------------------------------
_SKIP_DIRS = {".git", ".venv", "venv", "node_modules", "deploy", "dist", "build", ".forge", "__pycache__", "tests"}


def find_steps(project: Path, problems: list[str]) -> tuple[Workflow, ...]:
    """Every `@forge_runtime.step("name", ...)` (or `@step(...)` imported from forge_runtime) in the
    project's Python files, in source order, grouped by workflow. Arguments must be literals: deploy
    reads them, it does not import the workload."""
    found: dict[str, list[Step]] = {}
    for path in sorted(project.rglob("*.py")):
        rel = path.relative_to(project)
        if any(part in _SKIP_DIRS for part in rel.parts[:-1]):
            continue
        try:
            source = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        if "step" not in source or "forge_runtime" not in source:
            continue
        try:
            tree = ast.parse(source, filename=str(path))
        except SyntaxError:
            continue
        names = _step_aliases(tree)
        if not names:
            continue
        nodes = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        for fn in sorted(nodes, key=lambda n: n.lineno):
            for deco in fn.decorator_list:
                if isinstance(deco, ast.Call) and _dotted(deco.func) in names:
                    step = _step_from_call(deco, f"{rel}:{deco.lineno}", problems)
                    if step:
                        found.setdefault(step.workflow, []).append(step)
    workflows = []
    for name, steps in found.items():
        seen = set()
        for s in steps:
            if s.name in seen:
                problems.append(f"step {s.name!r} ({s.where}) is declared twice in workflow {name!r}")
            seen.add(s.name)
        workflows.append(Workflow(name, tuple(steps)))
    return tuple(workflows)


def _dotted(node) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _step_aliases(tree) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name == "forge_runtime":
                    names.add(f"{a.asname or 'forge_runtime'}.step")
        elif isinstance(node, ast.ImportFrom) and node.module in ("forge_runtime", "forge_runtime.cloudflare"):
            for a in node.names:
                if a.name == "step":
                    names.add(a.asname or "step")
        if isinstance(node, ast.ImportFrom) and node.module == "forge_runtime":
            for a in node.names:
                if a.name == "cloudflare":
                    names.add(f"{a.asname or 'cloudflare'}.step")
    if any(isinstance(n, ast.Import) and any(a.name == "forge_runtime.cloudflare" for a in n.names)
           for n in ast.walk(tree)):
        names.add("forge_runtime.cloudflare.step")
    return names


def _step_from_call(call: ast.Call, where: str, problems: list[str]) -> Step | None:
    try:
        args = [ast.literal_eval(a) for a in call.args]
        kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg}
    except ValueError:
        problems.append(f"step at {where}: forge deploy reads the decorator's arguments without running "
                        "the code, so they must be literals (strings and numbers)")
        return None
    if len(args) != 1 or not isinstance(args[0], str) or not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", args[0]):
        problems.append(f"step at {where}: the first argument is the step's name, a string of letters, digits, "
                        "., _ and - (e.g. @forge_runtime.step(\"extract\"))")
        return None
    name = args[0]
    for key in kwargs:
        if key not in STEP_KEYS:
            problems.append(f"step {name!r} ({where}): unknown argument {key!r}{suggest(key, STEP_KEYS)}")
    retries = kwargs.get("retries", 0)
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 100:
        problems.append(f"step {name!r} ({where}): retries = {retries!r}: a whole number from 0 to 100")
        retries = 0
    backoff = kwargs.get("backoff", "exponential")
    if backoff not in BACKOFFS:
        problems.append(f"step {name!r} ({where}): backoff = {backoff!r}: one of {', '.join(BACKOFFS)}"
                        f"{suggest(backoff, BACKOFFS)}")
        backoff = "exponential"
    delay = parse_duration(kwargs.get("delay", 10))
    timeout = parse_duration(kwargs.get("timeout", "10 minutes"))
    for key, value in (("delay", delay), ("timeout", timeout)):
        if value is None:
            problems.append(f"step {name!r} ({where}): {key} = {kwargs.get(key)!r}: a duration such as "
                            "\"30 seconds\", \"5 minutes\" or a number of seconds")
    workflow = kwargs.get("workflow", "pipeline")
    if not isinstance(workflow, str) or not re.match(r"^[a-z][a-z0-9-]{0,30}$", workflow):
        problems.append(f"step {name!r} ({where}): workflow = {workflow!r}: lowercase letters, digits and dashes")
        workflow = "pipeline"
    return Step(name, retries, backoff, delay or 10.0, timeout or 600.0, workflow, where)


def load_platform(project: Path, forge_tool: dict, table: dict, problems: list[str]) -> Platform:
    bindings = parse_bindings(table.get("bindings"), problems)
    enable, hosts = parse_egress(table, bindings, problems)
    timeout = parse_request_timeout(forge_tool, problems)
    workflows = find_steps(project, problems)
    names = {b.name for b in bindings}
    for wf in workflows:
        if wf.binding in names:
            problems.append(f"workflow {wf.name!r}: its binding {wf.binding} clashes with a binding's name")
    return Platform(bindings, enable, hosts, workflows, timeout)
