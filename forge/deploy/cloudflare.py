"""`forge deploy cloudflare`: a Cloudflare Containers project around a forge image.

The project is a Worker whose Durable Object class extends `Container` from @cloudflare/containers;
each instance runs the forge image and the Worker forwards requests to it. The image is either a
registry reference (pushed with `forge push`) or built by wrangler from `Dockerfile.scratch` and a
build context that forge writes next to it.

Everything that can be checked is checked before a file is written: the settings in
`[tool.forge.cloudflare]`, the image's platform (Cloudflare runs linux/amd64 only) and its size
against the instance type's disk, with wrangler's own formula.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from forge import __version__
from forge.errors import ConfigError, DeployConfigError, ImageUnsuitable
from forge.output import is_output
from forge.config import CLOUDFLARE_KEYS
from forge.image.model import Image
from forge.deploy.cloudflare_platform import Platform, load_platform, parse_duration, suggest
from forge.deploy.cloudflare_worker import CONTAINER_LIFECYCLE_TS, HEADER, container_start_ts

from forge.deploy.platform import (COMPATIBILITY_DATE, CONTAINERS_VERSION, TYPESCRIPT_VERSION,  # noqa: F401
                                   WRANGLER_VERSION, worker_name as _slug)
CLASS_NAME = "ForgeContainer"
BINDING = "FORGE_CONTAINER"
DEFAULT_PORT = 8080

MB, MiB = 1000 * 1000, 1024 * 1024
# name: (vCPU, memory MiB, disk MB), as wrangler 4.86.0 defines them
INSTANCE_TYPES = {
    "lite": (0.0625, 256, 2000),
    "basic": (0.25, 1024, 4000),
    "standard-1": (0.5, 4096, 8000),
    "standard-2": (1, 6144, 12000),
    "standard-3": (2, 8192, 16000),
    "standard-4": (4, 12288, 20000),
}
REGIONS = ("ENAM", "WNAM", "EEUR", "WEUR", "APAC", "SAM", "ME", "OC", "AFR")
CLOUDFLARE_PULLS_FROM = "registry.cloudflare.com, Docker Hub (docker.io) and Amazon ECR"
SETTINGS_KEYS = CLOUDFLARE_KEYS
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SLEEP = re.compile(r"^[1-9][0-9]*[smh]$")
_WORKER_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class CloudflareSettings:
    name: str
    instance_type: str | dict = "lite"
    max_instances: int = 5
    sleep_after: str | int = "5m"
    env: dict[str, str] = field(default_factory=dict)
    regions: tuple[str, ...] = ()
    compatibility_date: str = COMPATIBILITY_DATE
    platform: Platform = field(default_factory=Platform)

    @property
    def disk_bytes(self) -> int:
        if isinstance(self.instance_type, dict):
            return int(self.instance_type["disk_mb"] * MB)
        return INSTANCE_TYPES[self.instance_type][2] * MB

    @property
    def instance_label(self) -> str:
        if isinstance(self.instance_type, dict):
            t = self.instance_type
            return f"custom ({t['vcpu']} vCPU, {t['memory_mib']} MiB, {t['disk_mb']} MB disk)"
        vcpu, mem, disk = INSTANCE_TYPES[self.instance_type]
        return f"{self.instance_type} ({vcpu:g} vCPU, {mem} MiB, {disk / 1000:g} GB disk)"


def read_pyproject(project: Path) -> dict:
    path = project / "pyproject.toml"
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}. Fix the file and run again.") from None


def load_settings(project: Path) -> CloudflareSettings:
    """`[tool.forge.cloudflare]` of project/pyproject.toml, every value checked; all problems reported at once."""
    pyproject = read_pyproject(project)
    forge_tool = pyproject.get("tool", {}).get("forge", {})
    table = forge_tool.get("cloudflare", {})
    where = f"[tool.forge.cloudflare] in {project / 'pyproject.toml'}"
    if not isinstance(table, dict):
        raise DeployConfigError(f"{where} must be a table.")
    problems: list[str] = []
    for key in table:
        if key not in SETTINGS_KEYS:
            problems.append(f"unknown setting {key!r}{suggest(key, SETTINGS_KEYS)} (known: {', '.join(SETTINGS_KEYS)})")

    name = table.get("name") or _slug(str(forge_tool.get("name") or pyproject.get("project", {}).get("name")
                                          or project.resolve().name))
    if not isinstance(name, str) or not _WORKER_NAME.match(name):
        problems.append(f"name = {name!r}: a Worker name is 1-63 lowercase letters, digits and dashes, "
                        "not starting or ending with a dash")

    instance_type = table.get("instance_type", "lite")
    if isinstance(instance_type, dict):
        keys = {"vcpu", "memory_mib", "disk_mb"}
        if set(instance_type) != keys or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in instance_type.values()):
            problems.append(f"instance_type = {instance_type!r}: a custom instance type (enterprise plans) has "
                            "exactly vcpu, memory_mib and disk_mb, all positive numbers")
    elif instance_type not in INSTANCE_TYPES:
        hint = {"dev": " ('dev' is deprecated: use 'lite')", "standard": " ('standard' is deprecated: use "
                "'standard-1')"}.get(instance_type, "") if isinstance(instance_type, str) else ""
        problems.append(f"instance_type = {instance_type!r}: use one of {', '.join(INSTANCE_TYPES)}{hint}")

    max_instances = table.get("max_instances", 5)
    if isinstance(max_instances, bool) or not isinstance(max_instances, int) or not 1 <= max_instances <= 1000:
        problems.append(f"max_instances = {max_instances!r}: a whole number from 1 to 1000")

    sleep_after = table.get("sleep_after", "5m")
    if isinstance(sleep_after, bool) or not (
            (isinstance(sleep_after, int) and sleep_after > 0)
            or (isinstance(sleep_after, str) and _SLEEP.match(sleep_after))):
        problems.append(f"sleep_after = {sleep_after!r}: a duration such as \"30s\", \"5m\" or \"1h\", or a "
                        "positive number of seconds")

    env = table.get("env", {})
    if not isinstance(env, dict):
        problems.append(f"env = {env!r}: a table of NAME = \"value\"")
        env = {}
    for k, v in env.items():
        if not _ENV_NAME.match(k):
            problems.append(f"env.{k}: variable names are letters, digits and _, not starting with a digit")
        if not isinstance(v, str):
            problems.append(f"env.{k} = {v!r}: values are strings (quote numbers and booleans)")

    regions = table.get("regions", [])
    if not isinstance(regions, list) or not all(isinstance(r, str) for r in regions):
        problems.append(f"regions = {regions!r}: a list of region codes ({', '.join(REGIONS)})")
        regions = []
    bad = [r for r in regions if r not in REGIONS]
    if bad:
        problems.append(f"regions: unknown {', '.join(map(repr, bad))}; use {', '.join(REGIONS)}")
    if len(set(regions)) != len(regions):
        problems.append("regions: a region is listed twice")

    date = table.get("compatibility_date", COMPATIBILITY_DATE)
    if not isinstance(date, str) or not _DATE.match(date):
        problems.append(f"compatibility_date = {date!r}: a date written YYYY-MM-DD")

    platform = load_platform(project, forge_tool, table, problems)

    if problems:
        raise DeployConfigError(f"{where} has {len(problems)} problem(s): " + "; ".join(problems) + ".")
    return CloudflareSettings(name=name, instance_type=instance_type, max_instances=max_instances,
                              sleep_after=sleep_after, env=dict(env), regions=tuple(regions),
                              compatibility_date=date, platform=platform)


# --- the image -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImageFacts:
    platform: str
    port: int
    size: int            # uncompressed bytes (what `docker image inspect` calls Size)
    layers: int
    compressed: int

    def required_disk(self) -> int:
        """wrangler's check before a push: ceil(size * 1.1 + layers * 16 MiB) must fit the disk."""
        return math.ceil(self.size * 1.1 + self.layers * 16 * MiB)


def image_facts(image: Image) -> ImageFacts:
    from forge.image.unpack import config_facts

    facts = config_facts(image, DEFAULT_PORT)
    return ImageFacts(platform=facts.platform, port=facts.port, size=facts.size, layers=len(image.layers),
                      compressed=image.compressed_size)


def check_image(facts: ImageFacts, settings: CloudflareSettings, what: str) -> None:
    if facts.platform.split("/")[:2] != ["linux", "amd64"]:
        raise ImageUnsuitable(f"{what} is a {facts.platform} image; Cloudflare Containers run linux/amd64 only. "
                              "Build the image for linux/amd64 (forge build does on an x86-64 machine).")
    need, disk = facts.required_disk(), settings.disk_bytes
    if need > disk:
        raise ImageUnsuitable(
            f"{what} is too large for instance_type {settings.instance_label}: wrangler needs size x 1.1 + 16 MiB "
            f"per layer = {facts.size / MB:.1f} MB x 1.1 + {facts.layers} x 16 MiB = {math.ceil(need / MB)} MB of "
            f"disk, and the instance has {disk // MB} MB. Choose a larger instance_type in [tool.forge.cloudflare] "
            "or make the image smaller.")


def bench_cold_start(project: Path) -> str | None:
    """forge's median cold starts from `<project>/.forge/bench/results.json` (written by `forge
    bench`: `cold_start: {variant: {process_ms, container_ms}}`)."""
    path = project / ".forge" / "bench" / "results.json"
    try:
        forge = json.loads(path.read_text())["cold_start"]["forge"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    parts = []
    for key, label in (("container_ms", "container"), ("process_ms", "process")):
        value = forge.get(key) if isinstance(forge, dict) else None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            parts.append(f"{value:.1f} ms ({label})")
    return ", ".join(parts) or None


# --- the files ------------------------------------------------------------------------------------------
def wrangler_config(settings: CloudflareSettings, image: str, build_context: str | None = None) -> dict:
    container: dict = {
        "class_name": CLASS_NAME,
        "image": image,
        "max_instances": settings.max_instances,
        "instance_type": settings.instance_type,
    }
    if build_context:
        container["image_build_context"] = build_context
    if settings.regions:
        container["constraints"] = {"regions": list(settings.regions)}
    from forge.deploy.cloudflare_worker import bindings_config, workflows_config

    config = {
        "$schema": "node_modules/wrangler/config-schema.json",
        "name": settings.name,
        "main": "src/index.ts",
        "compatibility_date": settings.compatibility_date,
        "observability": {"enabled": True},
        "containers": [container],
        "durable_objects": {"bindings": [{"name": BINDING, "class_name": CLASS_NAME}]},
        "migrations": [{"tag": "v1", "new_sqlite_classes": [CLASS_NAME]}],
        **bindings_config(settings.platform),
    }
    if settings.platform.workflows:
        config["workflows"] = workflows_config(settings.platform, settings.name)
    return config


def render_wrangler_jsonc(config: dict) -> str:
    header = HEADER.format(version=__version__)
    return (f"// {header}\n// Reference: https://developers.cloudflare.com/workers/wrangler/configuration/\n"
            + json.dumps(config, indent=2) + "\n")


def effective_sleep_after(settings: CloudflareSettings) -> str | int:
    """sleep_after, raised to outlast the request timeout and the longest step (plus a minute): an
    idle timer must not stop a container that is still answering."""
    p = settings.platform
    need = max([p.request_timeout] + [s.timeout for wf in p.workflows for s in wf.steps]) + 60
    have = parse_duration(settings.sleep_after) if isinstance(settings.sleep_after, int) else \
        int(settings.sleep_after[:-1]) * {"s": 1, "m": 60, "h": 3600}[settings.sleep_after[-1]]
    if have >= need:
        return settings.sleep_after
    return f"{math.ceil(need)}s"


def render_index_ts(settings: CloudflareSettings, port: int) -> str:
    if settings.platform.used:
        settings = dataclasses.replace(settings, sleep_after=effective_sleep_after(settings))
        from forge.deploy.cloudflare_worker import render_index_ts as platform_index_ts

        return platform_index_ts(settings, settings.platform, port, __version__, CLASS_NAME, BINDING)
    sleep = json.dumps(settings.sleep_after)
    env = json.dumps(dict(sorted(settings.env.items())), indent=2).replace("\n", "\n  ")
    if settings.max_instances > 1:
        pick = (f"    // Spread requests over up to max_instances ({settings.max_instances}) containers.\n"
                f"    const container = await getRandom(env.{BINDING}, {settings.max_instances});")
        imports = "Container, getRandom"
    else:
        pick = f"    const container = getContainer(env.{BINDING});"
        imports = "Container, getContainer"
    allowed = settings.platform.container_allowed_hosts()
    allowed_line = f"  allowedHosts = {json.dumps(allowed)};\n" if allowed is not None else ""
    egress_note = "open to the internet." if settings.platform.enable_internet else "deny by default."
    return f"""// {HEADER.format(version=__version__)}
import {{ {imports} }} from "@cloudflare/containers";

// One Durable Object per container instance; each runs the forge image.
export class {CLASS_NAME} extends Container {{
  // The port the forge runtime listens on inside the image (PORT in the image config).
  defaultPort = {port};
  // Stop an idle container after this long (SIGTERM); the next request starts it again.
  sleepAfter = {sleep};
  // Environment of the process in the container, from [tool.forge.cloudflare] env.
  envVars = {env};
  // Egress (enable_internet / allowed_hosts in [tool.forge.cloudflare]): {egress_note}
  enableInternet = {json.dumps(settings.platform.enable_internet)};
{allowed_line}
{container_start_ts(settings.platform.request_timeout)}{CONTAINER_LIFECYCLE_TS}}}

interface ForgeEnv {{
  {BINDING}: DurableObjectNamespace<{CLASS_NAME}>;
}}

export default {{
  async fetch(request: Request, env: ForgeEnv): Promise<Response> {{
{pick}
    return container.fetch(request);
  }},
}} satisfies ExportedHandler<ForgeEnv>;
"""


def render_package_json(settings: CloudflareSettings) -> str:
    doc = {
        "name": settings.name,
        "private": True,
        "type": "module",
        "scripts": {
            "deploy": "wrangler deploy",
            "dry-run": "wrangler deploy --dry-run --outdir dist",
            "dev": "wrangler dev",
            "check": "wrangler types && tsc --noEmit",
            **({"bindings": "wrangler dev --config wrangler.local.jsonc"} if settings.platform.used else {}),
        },
        "dependencies": {"@cloudflare/containers": CONTAINERS_VERSION},
        "devDependencies": {"typescript": TYPESCRIPT_VERSION, "wrangler": WRANGLER_VERSION},
    }
    return json.dumps(doc, indent=2) + "\n"


def render_tsconfig() -> str:
    doc = {
        "compilerOptions": {
            "target": "es2022",
            "module": "es2022",
            "moduleResolution": "bundler",
            "lib": ["es2022"],
            "types": ["./worker-configuration.d.ts"],
            "strict": True,
            "noEmit": True,
            "isolatedModules": True,
            "skipLibCheck": True,
        },
        "include": ["src/**/*.ts", "worker-configuration.d.ts"],
    }
    return json.dumps(doc, indent=2) + "\n"


GITIGNORE = "node_modules/\n.wrangler/\ndist/\nworker-configuration.d.ts\n"


def render_readme(settings: CloudflareSettings, image_line: str, facts: ImageFacts, cold_start: str | None,
                  dockerfile: bool) -> str:
    env = ", ".join(sorted(settings.env)) or "none"
    regions = ", ".join(settings.regions) or "any"
    image_help = (
        "wrangler builds the image from `Dockerfile.scratch` and `context/` (written by forge: the same\n"
        "files as the forge image) with `docker build --platform linux/amd64`, then pushes it to Cloudflare's\n"
        "registry. This route needs Docker where you run `wrangler deploy`."
        if dockerfile else
        "The image is pulled by reference. Cloudflare pulls only from " + CLOUDFLARE_PULLS_FROM + ";\n"
        "for another registry, copy the image to one of those first (`forge push` can push to Docker Hub).\n"
        "Push a new image with `forge push`, then run `forge deploy cloudflare` again (or edit `image`).")
    cold = f"- Cold start (median, `forge bench`): {cold_start}\n" if cold_start else ""
    return f"""# {settings.name} on Cloudflare Containers

{HEADER.format(version=__version__)}

## Deploy

```sh
npm install
npx wrangler login            # or set CLOUDFLARE_API_TOKEN (and CLOUDFLARE_ACCOUNT_ID)
npx wrangler deploy
```

`npm run dry-run` bundles the Worker and checks the configuration without an account;
`npm run check` type-checks `src/index.ts` (it runs `wrangler types` first).

## What is here

- `wrangler.jsonc`: the Worker `{settings.name}`, one container class `{CLASS_NAME}`
  (image `{image_line}`), its Durable Object binding `{BINDING}` and the migration that creates it.
- `src/index.ts`: `{CLASS_NAME}` extends `Container` from `@cloudflare/containers`; the Worker's
  `fetch` forwards every request to a container instance on port {facts.port}.
- `package.json`: wrangler {WRANGLER_VERSION} (needs Node >= 22.12) and
  @cloudflare/containers {CONTAINERS_VERSION}, pinned.

## The image

{image_help}

- Platform: {facts.platform}
- Size: {facts.compressed / MiB:.1f} MiB compressed, {facts.size / MiB:.1f} MiB uncompressed, {facts.layers} layer(s)
- Disk needed (wrangler: size x 1.1 + 16 MiB per layer): {math.ceil(facts.required_disk() / MB)} MB of {settings.disk_bytes // MB} MB
{cold}
## Settings (`[tool.forge.cloudflare]` in the project's pyproject.toml)

- instance_type: {settings.instance_label}
- max_instances: {settings.max_instances}
- sleep_after: {settings.sleep_after}
- env: {env}
- regions: {regions}

Change them there and run `forge deploy cloudflare` again. Secrets do not belong in `env`: it is
written into `src/index.ts`; use `npx wrangler secret put NAME` and pass them from the Worker.
{render_platform_readme(settings)}"""


def render_platform_readme(settings: CloudflareSettings) -> str:
    p = settings.platform
    if p.enable_internet:
        egress = ("The container may reach the internet (`enable_internet = true`)"
                  + (f", only these hosts: {', '.join(p.allowed_hosts)}." if p.allowed_hosts else "."))
    elif p.allowed_hosts:
        egress = (f"The container reaches only these hosts: {', '.join(p.allowed_hosts)} and its bindings' "
                  "hosts (`allowed_hosts`).")
    else:
        egress = ("Deny by default: the container reaches its bindings' hosts (served by the Worker) and "
                  "nothing else.")
    lines = ["", "## Egress", "", egress, "To open it, set in `[tool.forge.cloudflare]` either",
             "`allowed_hosts = [\"api.example.com\", \"*.example.net\"]` (only those hosts) or",
             "`enable_internet = true` (everything), then run `forge deploy cloudflare` again."]
    if p.bindings:
        lines += ["", "## Bindings", "", "The container reaches each binding over plain HTTP on its virtual host; "
                  "the Worker's `outboundByHost` handlers (`src/forge.ts`) serve them. In Python:",
                  "`forge_runtime.cloudflare.kv(\"NAME\")` and friends.", ""]
        for b in p.bindings:
            lines.append(f"- `{b.name}` ({b.kind}, {b.resource_label}): `http://{b.host}/`")
    if p.workflows:
        lines += ["", "## Workflows", ""]
        for wf in p.workflows:
            steps = " -> ".join(f"{s.name} (retries {s.retries}, {s.backoff}, timeout {s.config()['timeout']})"
                                for s in wf.steps)
            lines.append(f"- `{wf.name}` ({wf.class_name}, binding {wf.binding}): {steps}")
        lines += ["", "Each step is one request to the container (`POST /_forge/steps/NAME`). Start and watch "
                  "an instance (set the token first: `npx wrangler secret put FORGE_WORKFLOW_TOKEN`):", "",
                  "```sh",
                  f"curl -X POST -H \"Authorization: Bearer $TOKEN\" https://WORKER/_forge/workflows/"
                  f"{p.workflows[0].name} -d '{{\"doc\": \"...\"}}'",
                  f"curl -H \"Authorization: Bearer $TOKEN\" https://WORKER/_forge/workflows/{p.workflows[0].name}/ID",
                  f"curl -X POST -H \"Authorization: Bearer $TOKEN\" https://WORKER/_forge/workflows/"
                  f"{p.workflows[0].name}/ID/events/approval -d '{{}}'",
                  "```"]
    if p.used:
        lines += ["", "## Local emulation", "",
              "`npm run bindings` runs `src/local.ts` under `wrangler dev` (Miniflare) on 127.0.0.1:8787 with "
              "local KV, R2, D1 and Queues storage (`.wrangler/state`). Run the workload locally with",
              "`FORGE_CLOUDFLARE_URL=http://127.0.0.1:8787` and forge_runtime.cloudflare talks to it. Workers AI "
              "has no local emulation."]
    return "\n".join(lines) + "\n"


# --- the command -----------------------------------------------------------------------------------------
@dataclass
class DeployResult:
    out_dir: Path
    image: str
    facts: ImageFacts
    settings: CloudflareSettings
    cold_start: str | None
    report: object
    warnings: list[str] = field(default_factory=list)


def default_build_output(project: Path, name: str) -> Path | None:
    for base in (project / "dist", Path.cwd() / "dist"):
        if is_output(base / name):
            return base / name
    return None


def generate(project: Path, *, image_ref: str | None = None, dockerfile: bool = False,
             from_output: Path | None = None, out_dir: Path | None = None, force: bool = False,
             insecure: bool = False) -> DeployResult:
    """Check everything, then write the Cloudflare project to out_dir (default project/deploy/cloudflare)."""
    from forge.deploy.files import write_generated
    from forge.publish.reference import parse_reference

    project = Path(project).resolve()
    if not project.is_dir():
        raise DeployConfigError(f"--project {project} is not a directory.")
    if bool(image_ref) == bool(dockerfile):
        raise DeployConfigError("choose where Cloudflare gets the image: --image REF (a registry reference "
                                "pushed with `forge push`) or --dockerfile (wrangler builds it from "
                                "Dockerfile.scratch and the build context forge writes).")
    settings = load_settings(project)
    out_dir = Path(out_dir).resolve() if out_dir else project / "deploy" / "cloudflare"
    warnings: list[str] = []

    if image_ref:
        ref = parse_reference(image_ref, default_tag=None)
        if not ref.tag:
            raise DeployConfigError(f"--image {image_ref}: wrangler needs a tag in the reference "
                                    f"(e.g. {ref.name}:v1), not only a digest.")
        if from_output is not None:
            image = _load_output(from_output)
            what = f"the image in {from_output}"
        else:
            from forge.publish.registry import pull_image

            image = pull_image(ref, insecure=insecure)
            what = str(ref)
        host = ref.hostname
        if not (host == "registry.cloudflare.com" or ref.registry == "docker.io"
                or re.match(r"^[0-9]{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com$", host)):
            warnings.append(f"Cloudflare pulls images only from {CLOUDFLARE_PULLS_FROM}; {ref.registry} is none of "
                            "them, so `wrangler deploy` will refuse this image until you push it to one of them.")
        image_line = str(ref.with_digest(None))
    else:
        if from_output is None:
            from_output = default_build_output(project, settings.name) or default_build_output(
                project, _project_name(project))
            if from_output is None:
                raise DeployConfigError(f"--dockerfile needs the forge build output of {project}: run "
                                        f"`forge build {project}` first, or pass --from OUT.")
        image = _load_output(from_output)
        what = f"the image in {from_output}"
        image_line = "./Dockerfile.scratch"

    facts = image_facts(image)
    check_image(facts, settings, what)

    files = {
        "wrangler.jsonc": render_wrangler_jsonc(
            wrangler_config(settings, image_line, "./context" if dockerfile else None)),
        "src/index.ts": render_index_ts(settings, facts.port),
        "package.json": render_package_json(settings),
        "tsconfig.json": render_tsconfig(),
        ".gitignore": GITIGNORE,
    }
    if settings.platform.used:
        from forge.deploy.cloudflare_worker import local_config, render_forge_ts, render_local_ts

        files["src/forge.ts"] = render_forge_ts(settings.platform, __version__)
        files["src/local.ts"] = render_local_ts(settings.platform, __version__)
        files["wrangler.local.jsonc"] = render_wrangler_jsonc(local_config(settings, settings.platform))
    cold_start = bench_cold_start(project)
    files["README.md"] = render_readme(settings, image_line, facts, cold_start, dockerfile)
    from forge.deploy.files import GeneratedFile

    generated = {rel: GeneratedFile(text.encode()) for rel, text in files.items()}
    if dockerfile:
        generated.update(dockerfile_files(image))
    report = write_generated(out_dir, generated, force=force, command="forge deploy cloudflare")
    return DeployResult(out_dir, image_line, facts, settings, cold_start, report, warnings)


def _project_name(project: Path) -> str:
    pyproject = read_pyproject(project)
    tool = pyproject.get("tool", {}).get("forge", {})
    return re.sub(r"[^a-z0-9._-]+", "-", str(tool.get("name") or pyproject.get("project", {}).get("name")
                                             or project.name).lower()).strip("-") or "app"


def _load_output(path: Path) -> Image:
    from forge.image.read import load_image
    from forge.publish.registry import image_path_of

    return load_image(image_path_of(Path(path)))



def spec_from_image(image: Image, app_dir: Path):
    """forge.image.unpack.spec_from_image with this target's default port."""
    from forge.image.unpack import spec_from_image as unpack_spec

    return unpack_spec(image, app_dir, DEFAULT_PORT)


def dockerfile_files(image: Image) -> dict:
    """`Dockerfile.scratch` at the top and its build context in `context/` (forge.image.context lays
    it out), as GeneratedFile entries."""
    import os
    import shutil
    import stat
    import tempfile

    from forge.deploy.files import GeneratedFile
    from forge.image.unpack import context_from_image

    tmp = Path(tempfile.mkdtemp(prefix="forge-dockerfile-"))
    try:
        ctx = context_from_image(image, tmp, DEFAULT_PORT)
        files = {"Dockerfile.scratch": GeneratedFile((ctx / "Dockerfile").read_bytes())}
        for path in sorted(ctx.rglob("*")):
            rel = path.relative_to(ctx).as_posix()
            if rel == "Dockerfile":
                continue
            st = os.lstat(path)
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                files[f"context/{rel}"] = GeneratedFile(kind="symlink", target=os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                files[f"context/{rel}"] = GeneratedFile(kind="dir", mode=mode)
            else:
                files[f"context/{rel}"] = GeneratedFile(path.read_bytes(), mode=mode)
        files["context"] = GeneratedFile(kind="dir", mode=0o755)
        return files
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
