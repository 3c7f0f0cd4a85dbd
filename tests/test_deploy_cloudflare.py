"""forge deploy cloudflare: the generated project is checked by wrangler itself (the pinned release) (its JSON
schema, `wrangler deploy --dry-run`, `wrangler types` + tsc), and every refusal happens before a
file is written."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from forge import errors
from forge.deploy.cloudflare import CLASS_NAME, CONTAINERS_VERSION, WRANGLER_VERSION, generate, load_settings
from forge.deploy.files import MANIFEST
from forge.publish.registry import BlobIndex, RegistryPublisher
from tests.plugins.registry import make_image, write_oci_layout

FORGE = [sys.executable, "-m", "forge"]


def strip_jsonc(text: str) -> str:
    """Drop // and /* */ comments outside strings (JSONC -> JSON)."""
    out, i, n, in_str = [], 0, len(text), False
    while i < n:
        c = text[i]
        if in_str:
            out.append(c)
            if c == "\\":
                out.append(text[i + 1])
                i += 1
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
            out.append(c)
        elif text.startswith("//", i):
            i = text.find("\n", i)
            i = n if i < 0 else i
            continue
        elif text.startswith("/*", i):
            i = text.index("*/", i) + 2
            continue
        else:
            out.append(c)
        i += 1
    return "".join(out)


def read_wrangler(out: Path) -> dict:
    return json.loads(strip_jsonc((out / "wrangler.jsonc").read_text()))


def tree_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and "node_modules" not in p.parts}


def make_project(tmp_path: Path, cloudflare: str = "", name: str = "edge-hello") -> Path:
    project = tmp_path / "project"
    project.mkdir(exist_ok=True)
    (project / "pyproject.toml").write_text(
        f'[project]\nname = "{name}"\nversion = "0.1.0"\n\n[tool.forge]\nentry = "app:app"\n\n'
        f"[tool.forge.cloudflare]\n{cloudflare}\n")
    (project / "app.py").write_text("def app(request):\n    return 'hi'\n")
    return project


@pytest.fixture(scope="module")
def pushed(registry, tmp_path_factory):
    """An amd64 image in the loopback registry, as `forge push` leaves it."""
    image = make_image("deploy-amd64", layer_sizes=(20_000,))
    ref = f"{registry.host}/deploy/app:v1"
    RegistryPublisher(ref, insecure=True, credentials=None, log=None,
                      blob_index=BlobIndex(tmp_path_factory.mktemp("idx") / "b.json")).publish(image)
    return ref, image


def forge(*args, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "DOCKER_CONFIG": "/nonexistent"}
    env.pop("FORGE_REGISTRY_USER", None)
    env.pop("FORGE_REGISTRY_PASSWORD", None)
    return subprocess.run([*FORGE, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


# --- the generated project, checked by wrangler ------------------------------------------------------
def test_generated_project_passes_wrangler(pushed, wrangler, tmp_path):
    ref, image = pushed
    project = make_project(tmp_path, 'instance_type = "basic"\nmax_instances = 3\nsleep_after = "2m"\n'
                                     'env = { GREETING = "hello", LOG_LEVEL = "info" }\nregions = ["WEUR", "ENAM"]\n')
    out = tmp_path / "cf"
    r = forge("deploy", "cloudflare", "--project", str(project), "--image", ref, "--insecure", "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert "basic" in r.stdout and "cd " in r.stdout
    assert "Cloudflare pulls images only from" in r.stderr      # a loopback registry is not one of them

    config = read_wrangler(out)
    jsonschema.validate(config, wrangler.schema)                # wrangler's own schema, additionalProperties: false
    assert config["name"] == "edge-hello" and config["main"] == "src/index.ts"
    assert config["containers"] == [{"class_name": CLASS_NAME, "image": ref, "max_instances": 3,
                                     "instance_type": "basic", "constraints": {"regions": ["WEUR", "ENAM"]}}]
    assert config["durable_objects"]["bindings"] == [{"name": "FORGE_CONTAINER", "class_name": CLASS_NAME}]
    assert config["migrations"] == [{"tag": "v1", "new_sqlite_classes": [CLASS_NAME]}]

    index_ts = (out / "src" / "index.ts").read_text()
    assert f"export class {CLASS_NAME} extends Container" in index_ts
    assert "defaultPort = 8080;" in index_ts and 'sleepAfter = "2m";' in index_ts
    assert '"GREETING": "hello"' in index_ts
    package = json.loads((out / "package.json").read_text())
    assert package["devDependencies"]["wrangler"] == WRANGLER_VERSION == "4.164.0"
    assert package["dependencies"]["@cloudflare/containers"] == CONTAINERS_VERSION
    assert json.loads((out / "tsconfig.json").read_text())["compilerOptions"]["strict"] is True
    assert "wrangler deploy" in (out / "README.md").read_text()
    recorded = json.loads((out / MANIFEST).read_text())["files"]
    assert set(recorded) == {"wrangler.jsonc", "src/index.ts", "package.json", "tsconfig.json", "README.md",
                             ".gitignore"}

    wrangler.link_into(out)
    dry = wrangler.run(out, "wrangler", "deploy", "--dry-run", "--outdir", "dist")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "env.FORGE_CONTAINER (ForgeContainer)" in dry.stdout
    assert ref in dry.stdout                                    # "The following containers are available"
    bundle = (out / "dist" / "index.js").read_text()
    assert "ForgeContainer" in bundle and "defaultPort = 8080" in bundle and "@cloudflare/containers" in bundle

    types = wrangler.run(out, "wrangler", "types")
    assert types.returncode == 0, types.stdout + types.stderr
    tsc = wrangler.run(out, "tsc", "--noEmit", "-p", ".")
    assert tsc.returncode == 0, tsc.stdout + tsc.stderr


def test_single_instance_uses_get_container_and_typechecks(pushed, wrangler, tmp_path):
    ref, _ = pushed
    project = make_project(tmp_path, "max_instances = 1\nsleep_after = 90\n")
    result = generate(project, image_ref=ref, insecure=True)
    out = result.out_dir
    assert out == project / "deploy" / "cloudflare"
    index_ts = (out / "src" / "index.ts").read_text()
    assert "getContainer(env.FORGE_CONTAINER)" in index_ts and "sleepAfter = 90;" in index_ts
    jsonschema.validate(read_wrangler(out), wrangler.schema)
    wrangler.link_into(out)
    assert wrangler.run(out, "wrangler", "types").returncode == 0
    tsc = wrangler.run(out, "tsc", "--noEmit", "-p", ".")
    assert tsc.returncode == 0, tsc.stdout + tsc.stderr


# --- refusals: nothing is written ------------------------------------------------------------------------
@pytest.mark.parametrize("settings, fragment", [
    ('instance_type = "huge"', "instance_type = 'huge'"),
    ('instance_type = "dev"', "deprecated"),
    ("max_instances = 0", "max_instances = 0"),
    ('sleep_after = "5 minutes"', "sleep_after"),
    ("env = { PORT = 8080 }", "values are strings"),
    ('env = { "1BAD" = "x" }', "variable names"),
    ('regions = ["MARS"]', "'MARS'"),
    ('colour = "blue"', "unknown setting 'colour'"),
    ('instance_type = { vcpu = 1, memory_mib = 512 }', "custom instance type"),
])
def test_invalid_settings_refused_before_writing(pushed, tmp_path, settings, fragment):
    ref, _ = pushed
    project = make_project(tmp_path, settings)
    out = tmp_path / "cf"
    r = forge("deploy", "cloudflare", "--project", str(project), "--image", ref, "--insecure", "-o", str(out))
    assert r.returncode == errors.DeployConfigError.exit_code == 44, r.stderr
    assert fragment in r.stderr.replace("\n", " ")
    assert not out.exists()


def test_all_problems_reported_at_once(tmp_path):
    project = make_project(tmp_path, 'instance_type = "huge"\nmax_instances = -1\nregions = ["MARS"]\n')
    with pytest.raises(errors.DeployConfigError, match="3 problem"):
        load_settings(project)


def test_non_amd64_image_refused(registry, tmp_path):
    image = make_image("deploy-arm64", architecture="arm64")
    ref = f"{registry.host}/deploy/arm:v1"
    RegistryPublisher(ref, insecure=True, credentials=None, log=None,
                      blob_index=BlobIndex(tmp_path / "b.json")).publish(image)
    project = make_project(tmp_path)
    out = tmp_path / "cf"
    r = forge("deploy", "cloudflare", "--project", str(project), "--image", ref, "--insecure", "-o", str(out))
    assert r.returncode == errors.ImageUnsuitable.exit_code == 48
    assert "linux/arm64" in r.stderr and "linux/amd64 only" in r.stderr
    assert not out.exists()


def test_image_too_large_for_instance_refused(tmp_path):
    # wrangler's rule: size x 1.1 + 16 MiB per layer <= disk. 120 small layers need > 2 GB: too big for lite.
    many = make_image("many-layers", layer_sizes=(64,) * 120)
    build_out = write_oci_layout(many, tmp_path / "many")
    project = make_project(tmp_path, 'instance_type = "lite"')
    out = tmp_path / "cf"
    r = forge("deploy", "cloudflare", "--project", str(project), "--image", "docker.io/you/app:v1",
              "--from", str(build_out), "-o", str(out))
    assert r.returncode == errors.ImageUnsuitable.exit_code, r.stderr
    assert "too large" in r.stderr and "120 x 16 MiB" in r.stderr and "2000 MB" in r.stderr
    assert not out.exists()
    # the same image fits standard-1 (8 GB)
    make_project(tmp_path, 'instance_type = "standard-1"')
    ok = forge("deploy", "cloudflare", "--project", str(project), "--image", "docker.io/you/app:v1",
               "--from", str(build_out), "-o", str(out))
    assert ok.returncode == 0, ok.stderr
    assert "docker.io/you/app:v1" == read_wrangler(out)["containers"][0]["image"]
    assert "Cloudflare pulls" not in ok.stderr                  # Docker Hub is one Cloudflare pulls from


def test_size_check_counts_uncompressed_bytes(tmp_path):
    # A custom (enterprise) instance with 20 MB of disk: 4 MB of incompressible data in one layer needs
    # 4 MB x 1.1 + 16 MiB = 21.2 MB, so it does not fit, though the compressed image is also ~4 MB.
    build_out = write_oci_layout(make_image("four-mb", layer_sizes=(4_000_000,)), tmp_path / "img")
    project = make_project(tmp_path, "instance_type = { vcpu = 0.5, memory_mib = 512, disk_mb = 20 }")
    with pytest.raises(errors.ImageUnsuitable, match="22 MB of disk"):
        generate(project, image_ref="docker.io/you/app:v1", from_output=build_out)
    build_out = write_oci_layout(make_image("two-mb", layer_sizes=(2_000_000,)), tmp_path / "img2")
    generate(project, image_ref="docker.io/you/app:v1", from_output=build_out)


def test_image_route_must_be_chosen(tmp_path):
    project = make_project(tmp_path)
    r = forge("deploy", "cloudflare", "--project", str(project))
    assert r.returncode == errors.DeployConfigError.exit_code and "--image REF" in r.stderr
    r = forge("deploy", "cloudflare", "--project", str(project), "--image", "127.0.0.1:5/app@sha256:" + "a" * 64)
    assert r.returncode == errors.DeployConfigError.exit_code and "needs a tag" in r.stderr


# --- user edits ---------------------------------------------------------------------------------------------
def test_user_changes_are_kept_unless_force(pushed, tmp_path):
    ref, _ = pushed
    project = make_project(tmp_path, "max_instances = 2")
    out = tmp_path / "cf"
    generate(project, image_ref=ref, insecure=True, out_dir=out)
    # a second run with the same inputs changes nothing
    again = generate(project, image_ref=ref, insecure=True, out_dir=out)
    assert again.report.written == [] and len(again.report.unchanged) == 6

    index_ts = out / "src" / "index.ts"
    index_ts.write_text(index_ts.read_text() + "\n// my own route\n")
    (out / "extra.txt").write_text("mine")                      # files forge never wrote are left alone
    make_project(tmp_path, "max_instances = 7")                 # a setting changed: wrangler.jsonc must change
    before = tree_hashes(out)
    r = forge("deploy", "cloudflare", "--project", str(project), "--image", ref, "--insecure", "-o", str(out))
    assert r.returncode == errors.UserFileChanged.exit_code == 45
    assert "src/index.ts" in r.stderr and "--force" in r.stderr
    assert tree_hashes(out) == before                           # refused as a whole: not even wrangler.jsonc

    r = forge("deploy", "cloudflare", "--project", str(project), "--image", ref, "--insecure", "-o", str(out),
              "--force")
    assert r.returncode == 0, r.stderr
    assert "overwrote your changes to src/index.ts" in r.stderr
    assert "my own route" not in index_ts.read_text()
    assert read_wrangler(out)["containers"][0]["max_instances"] == 7
    assert (out / "extra.txt").read_text() == "mine"


def test_unchanged_generated_files_are_updated(pushed, tmp_path):
    ref, _ = pushed
    project = make_project(tmp_path, "max_instances = 2")
    out = tmp_path / "cf"
    generate(project, image_ref=ref, insecure=True, out_dir=out)
    make_project(tmp_path, "max_instances = 4")
    result = generate(project, image_ref=ref, insecure=True, out_dir=out)
    assert "wrangler.jsonc" in result.report.written
    assert read_wrangler(out)["containers"][0]["max_instances"] == 4
    assert not [p for p in out.iterdir() if p.name.startswith(".forge-tmp")]


def test_file_forge_did_not_write_is_a_conflict(pushed, tmp_path):
    ref, _ = pushed
    project = make_project(tmp_path)
    out = tmp_path / "cf"
    out.mkdir()
    (out / "README.md").write_text("my notes")
    with pytest.raises(errors.UserFileChanged, match="README.md"):
        generate(project, image_ref=ref, insecure=True, out_dir=out)
    assert (out / "README.md").read_text() == "my notes"
    assert not (out / "wrangler.jsonc").exists()


# --- bench results ------------------------------------------------------------------------------------------
def test_bench_cold_start_is_shown(pushed, tmp_path):
    ref, _ = pushed
    project = make_project(tmp_path)
    bench = project / ".forge" / "bench"
    bench.mkdir(parents=True)
    (bench / "results.json").write_text(json.dumps(
        {"workload": "edge-hello", "cold_start": {"forge": {"process_ms": 12.34, "container_ms": 201.5},
                                                  "cpython": {"process_ms": 30.0, "container_ms": 250.0}}}))
    out = tmp_path / "cf"
    r = forge("deploy", "cloudflare", "--project", str(project), "--image", ref, "--insecure", "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert "cold start 201.5 ms (container), 12.3 ms (process)" in r.stdout
    assert "201.5 ms (container)" in (out / "README.md").read_text()


# --- the Dockerfile route -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def floor_build(tmp_path_factory):
    """A forge build output (forge-build.json + image/) holding the static C floor server."""
    from forge.image.build import ImageSpec, build_image
    from forge.image.floor import build_floor

    app_dir = tmp_path_factory.mktemp("floor-app")
    build_floor(app_dir)
    image = build_image(ImageSpec(app_dir=app_dir, env={"GREETING": "hello there"}))
    out = tmp_path_factory.mktemp("floor-out")
    write_oci_layout(image, out / "image")
    (out / "forge-build.json").write_text(json.dumps({"name": "floor", "digest": image.digest}))
    return out, image, app_dir


def test_dockerfile_route(floor_build, wrangler, tmp_path):
    build_out, image, app_dir = floor_build
    project = make_project(tmp_path, 'instance_type = "basic"')
    out = tmp_path / "cf"
    r = forge("deploy", "cloudflare", "--project", str(project), "--dockerfile", "--from", str(build_out),
              "-o", str(out))
    assert r.returncode == 0, r.stderr
    config = read_wrangler(out)
    jsonschema.validate(config, wrangler.schema)
    assert config["containers"][0]["image"] == "./Dockerfile.scratch"
    assert config["containers"][0]["image_build_context"] == "./context"
    dockerfile = (out / "Dockerfile.scratch").read_text()
    assert "FROM scratch" in dockerfile and 'ENTRYPOINT ["/app/app"]' in dockerfile
    assert 'ENV GREETING="hello there"' in dockerfile
    app = out / "context" / "app" / "app"
    assert app.read_bytes() == (app_dir / "app").read_bytes()    # the app layer, unpacked from the image
    assert app.stat().st_mode & 0o777 == 0o755
    assert (out / "context" / "rootfs" / "tmp").stat().st_mode & 0o7777 == 0o1777
    assert (out / "context" / "nonroot-home").is_dir()
    again = generate(project, dockerfile=True, from_output=build_out, out_dir=out)
    assert again.report.written == []                           # directories and files all unchanged
    # switching to a registry image removes what only the Dockerfile route needed (it is unchanged)
    (out / "context" / "app" / "notes.txt").write_text("mine")
    switched = generate(project, image_ref="docker.io/you/floor:v1", from_output=build_out, out_dir=out)
    assert not (out / "Dockerfile.scratch").exists() and not (out / "context" / "rootfs").exists()
    assert (out / "context" / "app" / "notes.txt").read_text() == "mine"   # not forge's: kept
    assert "Dockerfile.scratch" in switched.report.removed


@pytest.mark.docker
def test_dockerfile_route_builds_and_runs(floor_build, tmp_path):
    """`docker build -f Dockerfile.scratch context` (what wrangler runs, less BuildKit's --load) gives
    an image that serves like the forge image."""
    import shutil
    import time
    import uuid

    import requests

    from tests.plugins.registry import free_port

    if not shutil.which("docker") or subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        pytest.fail("no Docker engine answers; run scripts/start-dockerd.sh")
    build_out, _, _ = floor_build
    project = make_project(tmp_path)
    out = generate(project, dockerfile=True, from_output=build_out, out_dir=tmp_path / "cf").out_dir
    tag = f"forge-dockerfile-route:{uuid.uuid4().hex[:8]}"
    built = subprocess.run(["docker", "build", "-q", "--platform", "linux/amd64", "-f", "Dockerfile.scratch",
                            "-t", tag, "context"], cwd=out, capture_output=True, text=True, timeout=300,
                           env={**os.environ, "DOCKER_BUILDKIT": "0"})
    assert built.returncode == 0, built.stderr
    port = free_port()
    name = f"forge-df-{uuid.uuid4().hex[:8]}"
    try:
        run = subprocess.run(["docker", "run", "-d", "--read-only", "--name", name, "-p", f"127.0.0.1:{port}:8080",
                              tag], capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        body, deadline = None, time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                resp = requests.get(f"http://127.0.0.1:{port}/", timeout=2)
                body = (resp.status_code, resp.text)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        assert body == (200, "ok\n")
        user = subprocess.run(["docker", "inspect", "-f", "{{.Config.User}}", tag], capture_output=True, text=True)
        assert user.stdout.strip() == "65532:65532"
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)


def test_multi_platform_index(registry, tmp_path):
    """An index: its linux/amd64 image is the one checked; an index without one is refused."""
    import requests

    idx = BlobIndex(tmp_path / "b.json")
    arm = make_image("index-arm64", architecture="arm64")
    amd = make_image("index-amd64", layer_sizes=(7_000,))
    for image, tag in ((arm, "arm"), (amd, "amd")):
        RegistryPublisher(f"{registry.host}/deploy/multi:{tag}", insecure=True, credentials=None, log=None,
                          blob_index=idx).publish(image)

    def put_index(tag, entries):
        doc = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
               "manifests": [{**img.manifest.descriptor(), "platform": {"os": "linux", "architecture": arch}}
                             for img, arch in entries]}
        r = requests.put(f"{registry.url}/v2/deploy/multi/manifests/{tag}", data=json.dumps(doc),
                         headers={"Content-Type": "application/vnd.oci.image.index.v1+json"}, timeout=10)
        assert r.status_code == 201, r.text

    put_index("both", [(arm, "arm64"), (amd, "amd64")])
    put_index("armonly", [(arm, "arm64")])
    project = make_project(tmp_path)
    result = generate(project, image_ref=f"{registry.host}/deploy/multi:both", insecure=True,
                      out_dir=tmp_path / "cf")
    assert result.facts.platform == "linux/amd64"
    assert result.facts.size == amd.uncompressed_size
    with pytest.raises(errors.ImageUnsuitable, match="linux/arm64; it has no linux/amd64"):
        generate(project, image_ref=f"{registry.host}/deploy/multi:armonly", insecure=True, out_dir=tmp_path / "cf2")
    assert not (tmp_path / "cf2").exists()
