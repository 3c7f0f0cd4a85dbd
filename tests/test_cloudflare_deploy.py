"""forge deploy cloudflare with bindings, egress settings and Workflows: wrangler's schema, `wrangler deploy
--dry-run` and tsc accept the project; bad settings are refused (exit 44) before any file is written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jsonschema
import pytest

from forge import errors
from forge.deploy.cloudflare import generate, load_settings
from tests.plugins.registry import make_image, write_oci_layout
from tests.test_deploy_cloudflare import forge, make_project, read_wrangler, strip_jsonc

ROOT = Path(__file__).resolve().parent.parent
KV_ID = "0f2ac74b498b48028cb68387c421e279"
D1_ID = "4f4a7c2e-5b1d-4c3e-9a8f-2d6b7e1c0a94"


@pytest.fixture(scope="module")
def build_out(tmp_path_factory):
    return write_oci_layout(make_image("cf-platform", layer_sizes=(1000,)), tmp_path_factory.mktemp("img") / "out")


def test_pipeline_project_passes_wrangler(wrangler, build_out, tmp_path):
    project = tmp_path / "pipeline"
    shutil.copytree(ROOT / "examples" / "pipeline", project)
    out = generate(project, image_ref="docker.io/you/pipeline:v1", from_output=build_out, out_dir=tmp_path / "cf").out_dir
    config = read_wrangler(out)
    jsonschema.validate(config, wrangler.schema)
    assert config["kv_namespaces"] == [{"binding": "SESSIONS", "id": KV_ID}]
    assert config["r2_buckets"] == [{"binding": "ARTIFACTS", "bucket_name": "pipeline-artifacts"}]
    assert config["d1_databases"] == [{"binding": "DB", "database_id": D1_ID, "database_name": "pipeline"}]
    assert config["queues"] == {"producers": [{"binding": "EVENTS", "queue": "pipeline-events"}]}
    assert config["ai"] == {"binding": "AI"}
    assert config["workflows"] == [{"name": "pipeline-pipeline", "binding": "FORGE_WORKFLOW_PIPELINE",
                                    "class_name": "ForgePipelineWorkflow"}]
    jsonschema.validate(json.loads(strip_jsonc((out / "wrangler.local.jsonc").read_text())), wrangler.schema)

    index_ts = (out / "src" / "index.ts").read_text()
    assert "enableInternet = false;" in index_ts and "allowedHosts" not in index_ts
    assert "ForgeContainer.outboundByHost = outboundHandlers();" in index_ts
    assert "export { ContainerProxy };" in index_ts
    assert '"FORGE_REQUEST_TIMEOUT": "30"' in index_ts
    assert 'sleepAfter = "360s";' in index_ts                # the 5-minute extract step + a minute
    # start-time limits matched to the 30 s request timeout (capped at the platform's 20 s for the port)
    assert ('static readonly startLimits = {"instanceGetTimeoutMS": 8000, "portReadyTimeoutMS": 20000, '
            '"waitInterval": 100};') in index_ts
    assert "override async startAndWaitForPorts(" in index_ts
    forge_ts = (out / "src" / "forge.ts").read_text()
    for host in ("sessions.kv.forge.internal", "artifacts.r2.forge.internal", "db.d1.forge.internal",
                 "events.queue.forge.internal", "ai.ai.forge.internal"):
        assert host in forge_ts
    steps = [s["name"] for s in json.loads(forge_ts.split("WORKFLOWS: ")[1].split(" = ", 1)[1].split(";\n")[0])
             ["pipeline"]["steps"]]
    assert steps == ["extract", "embed", "store"]
    readme = (out / "README.md").read_text()
    assert "Deny by default" in readme and "enable_internet = true" in readme and "allowed_hosts" in readme

    wrangler.link_into(out)
    dry = wrangler.run(out, "wrangler", "deploy", "--dry-run", "--outdir", "dist")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    for line in ("env.SESSIONS", "env.ARTIFACTS", "env.DB", "env.EVENTS", "env.AI", "env.FORGE_WORKFLOW_PIPELINE"):
        assert line in dry.stdout
    assert wrangler.run(out, "wrangler", "types").returncode == 0
    tsc = wrangler.run(out, "tsc", "--noEmit", "-p", ".")
    assert tsc.returncode == 0, tsc.stdout + tsc.stderr


def test_sleep_after_outlasts_the_longest_step(build_out, tmp_path):
    project = make_project(tmp_path, 'sleep_after = "1m"\n')
    (project / "app.py").write_text('import forge_runtime\n\n@forge_runtime.step("long", timeout="20 minutes")\n'
                                    "def long(params, outputs):\n    return 1\n\ndef app(request):\n    return 'hi'\n")
    out = generate(project, image_ref="docker.io/you/app:v1", from_output=build_out, out_dir=tmp_path / "cf").out_dir
    assert 'sleepAfter = "1260s";' in (out / "src" / "index.ts").read_text()


def test_start_limits_follow_the_request_timeout():
    from forge.deploy.cloudflare_worker import start_limits

    assert start_limits(5) == {"instanceGetTimeoutMS": 8000, "portReadyTimeoutMS": 5000, "waitInterval": 100}
    assert start_limits(300)["portReadyTimeoutMS"] == 20000
    assert start_limits(0.2)["portReadyTimeoutMS"] == 1000


def test_egress_settings(build_out, tmp_path):
    project = make_project(tmp_path, f'allowed_hosts = ["api.example.com", "*.example.net"]\n'
                                     f'bindings = [{{ kind = "kv", name = "CACHE", id = "{KV_ID}" }}]\n')
    out = generate(project, image_ref="docker.io/you/app:v1", from_output=build_out, out_dir=tmp_path / "cf").out_dir
    index_ts = (out / "src" / "index.ts").read_text()
    assert 'allowedHosts = ["api.example.com", "*.example.net", "cache.kv.forge.internal"];' in index_ts
    make_project(tmp_path, "enable_internet = true\n")
    out = generate(project, image_ref="docker.io/you/app:v1", from_output=build_out, out_dir=tmp_path / "cf2").out_dir
    assert "enableInternet = true;" in (out / "src" / "index.ts").read_text()


@pytest.mark.parametrize("settings, fragments", [
    ('bindings = [{ kind = "kvv", name = "S", id = "x" }]', ["kind = 'kvv'", "did you mean 'kv'"]),
    ('bindings = [{ kind = "durable_object", name = "S" }]', ["not a binding kind", "kv, r2, d1, queue, ai"]),
    (f'bindings = [{{ kind = "kv", name = "S", id = "{KV_ID}" }}, {{ kind = "r2", name = "S", bucket = "b-1" }}]',
     ["used twice"]),
    (f'bindings = [{{ kind = "kv", name = "S", id = "{KV_ID}" }}, {{ kind = "kv", name = "s", id = "{KV_ID}" }}]',
     ["used twice", "differ in more than case"]),
    ('bindings = [{ kind = "kv", name = "S", id = "not-an-id" }]', ["not a KV namespace id", "32"]),
    ('bindings = [{ kind = "kv", name = "S" }]', ["needs id", "wrangler kv namespace create"]),
    ('bindings = [{ kind = "d1", name = "DB", id = "1234" }]', ["not a D1 database id", "UUID"]),
    ('bindings = [{ kind = "r2", name = "B", bucket = "Bad_Bucket" }]', ["not an R2 bucket name"]),
    ('bindings = [{ kind = "queue", name = "Q", queue = "-q" }]', ["not a queue name"]),
    ('bindings = [{ kind = "r2", name = "B", bukket = "b-1" }]', ["unknown key 'bukket'", "did you mean 'bucket'"]),
    ('bindings = [{ kind = "kv", name = "1BAD", id = "' + KV_ID + '" }]', ["a binding name is letters"]),
    ('bindings = [{ kind = "kv", name = "FORGE_CONTAINER", id = "' + KV_ID + '" }]', ["forge's own"]),
    ('bindings = [{ kind = "ai" }, { kind = "ai", name = "AI2" }]', ["more than one ai binding"]),
    ('bindings = { kind = "kv" }', ["a list of tables"]),
    ('bindngs = []', ["unknown setting 'bindngs'", "did you mean 'bindings'"]),
    ('allowed_hosts = ["https://x.com/"]', ["not a host name"]),
    ('enable_internet = "yes"', ["true or false"]),
])
def test_bad_platform_settings_refused_before_writing(build_out, tmp_path, settings, fragments):
    project = make_project(tmp_path, settings)
    out = tmp_path / "cf"
    r = forge("deploy", "cloudflare", "--project", str(project), "--image", "docker.io/you/app:v1",
              "--from", str(build_out), "-o", str(out))
    assert r.returncode == errors.DeployConfigError.exit_code == 44, r.stderr
    text = " ".join(r.stderr.split())
    for fragment in fragments:
        assert fragment in text
    assert "Traceback" not in r.stderr
    assert not out.exists()


def test_bad_steps_refused(tmp_path):
    project = make_project(tmp_path)
    (project / "app.py").write_text(
        "import forge_runtime\nN = 3\n"
        '@forge_runtime.step("a", retries=N)\ndef a(p, o):\n    return 1\n'
        '@forge_runtime.step("b", backof="linear")\ndef b(p, o):\n    return 1\n'
        '@forge_runtime.step("c", timeout="forever")\ndef c(p, o):\n    return 1\n'
        '@forge_runtime.step("c")\ndef c2(p, o):\n    return 1\n')
    with pytest.raises(errors.DeployConfigError) as err:
        load_settings(project)
    text = str(err.value)
    assert "must be literals" in text and "unknown argument 'backof'" in text and "did you mean 'backoff'" in text
    assert "timeout = 'forever'" in text and "declared twice" in text


def test_request_timeout_setting(tmp_path):
    project = make_project(tmp_path)
    text = (project / "pyproject.toml").read_text().replace('entry = "app:app"', 'entry = "app:app"\nrequest_timeout = "2 hours"')
    (project / "pyproject.toml").write_text(text)
    with pytest.raises(errors.DeployConfigError, match="request_timeout"):
        load_settings(project)
