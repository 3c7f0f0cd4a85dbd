"""forge ci github: the workflow validates against the GitHub Actions workflow schema (SchemaStore's,
as vendored by check-jsonschema), runs the commands that exist, and is never clobbered once edited."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from forge import errors
from forge.ci import render_workflow, user_changed
from forge.deploy.cloudflare import WRANGLER_VERSION

FORGE = [sys.executable, "-m", "forge"]
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"


def forge(*args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([*FORGE, *args], cwd=cwd, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})


def validate(path: Path) -> subprocess.CompletedProcess:
    if not CHECK_JSONSCHEMA.exists():
        pytest.fail("check-jsonschema is not installed (pip install -e .[test])")
    return subprocess.run([str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.github-workflows", str(path)],
                          capture_output=True, text=True, timeout=60)


def steps(text: str) -> list[str]:
    return re.findall(r"^      - (?:name: |uses: )(.+)$", text, flags=re.M)


def test_workflow_is_valid_and_complete(tmp_path):
    r = forge("ci", "github", "--image", "docker.io/acme/edge", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    wf = tmp_path / ".github" / "workflows" / "forge.yml"
    text = wf.read_text()
    check = validate(wf)
    assert check.returncode == 0, check.stdout + check.stderr
    assert steps(text) == ["System packages forge needs", "actions/checkout@v4", "actions/setup-node@v4",
                           "Install forge", "Cache forge's SDK", "Build", "Push",
                           "Generate the Cloudflare project", "Deploy with wrangler"]
    assert 'IMAGE: "docker.io/acme/edge"' in text
    assert "forge push dist/forge-app \"$IMAGE:${{ github.sha }}\"" in text
    assert "FORGE_REGISTRY_PASSWORD: ${{ secrets.REGISTRY_PASSWORD }}" in text
    assert "CLOUDFLARE_API_TOKEN: ${{ secrets.CLOUDFLARE_API_TOKEN }}" in text
    assert f"npx wrangler@{WRANGLER_VERSION} deploy" in text
    assert "forge deploy cloudflare --project \"$PROJECT\" --image \"$IMAGE:${{ github.sha }}\"" in text


def test_workflow_commands_match_the_cli(tmp_path):
    """Every forge option the workflow uses is one the CLI accepts (checked with --help)."""
    text = render_workflow(image="docker.io/acme/edge") + render_workflow(dockerfile=True)
    for cmd in re.findall(r"\bforge ((?:build|push|deploy cloudflare)\b[^\n]*)", text):
        words = cmd.split()
        sub = words[:2] if words[0] == "deploy" else words[:1]
        help_text = forge(*sub, "--help", cwd=tmp_path).stdout
        for opt in (w for w in words if w.startswith("-")):
            assert opt in help_text, f"`forge {' '.join(sub)}` has no option {opt}"


def test_dockerfile_route_has_no_push(tmp_path):
    out = tmp_path / "wf.yml"
    r = forge("ci", "github", "--dockerfile", "-o", str(out), "--project", "services/api", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    check = validate(out)
    assert check.returncode == 0, check.stdout + check.stderr
    text = out.read_text()
    assert "forge push" not in text and "REGISTRY_PASSWORD" not in text
    assert "--dockerfile --from dist/forge-app -o services/api/deploy/cloudflare" in text
    assert "working-directory: services/api/deploy/cloudflare" in text


def test_defaults_come_from_repository_variables(tmp_path):
    text = render_workflow()
    assert 'IMAGE: "${{ vars.FORGE_IMAGE }}"' in text and "Variable: FORGE_IMAGE" in text
    assert 'FORGE_PIP_SPEC: "${{ vars.FORGE_PIP_SPEC }}"' in text and "Variable: FORGE_PIP_SPEC" in text
    baked = render_workflow(forge_spec="forge @ git+https://example.invalid/forge@v1")
    assert 'FORGE_PIP_SPEC: "forge @ git+https://example.invalid/forge@v1"' in baked
    assert "Variable: FORGE_PIP_SPEC" not in baked
    with pytest.raises(errors.DeployConfigError, match="repository only"):
        render_workflow(image="docker.io/acme/edge:v1")


def test_rewrites_only_while_unchanged(tmp_path):
    wf = tmp_path / ".github" / "workflows" / "forge.yml"
    assert forge("ci", "github", cwd=tmp_path).returncode == 0
    first = wf.read_text()
    assert not user_changed(first)
    r = forge("ci", "github", cwd=tmp_path)
    assert r.returncode == 0 and "unchanged" in r.stdout
    r = forge("ci", "github", "--branch", "release", cwd=tmp_path)   # still forge's: rewritten
    assert r.returncode == 0 and '[ "release" ]'.replace(" ", "") in wf.read_text().replace(" ", "")

    wf.write_text(wf.read_text().replace("timeout-minutes: 60", "timeout-minutes: 90"))
    edited = wf.read_text()
    assert user_changed(edited)
    r = forge("ci", "github", cwd=tmp_path)
    assert r.returncode == errors.UserFileChanged.exit_code and "--force" in r.stderr
    assert wf.read_text() == edited
    r = forge("ci", "github", "--force", cwd=tmp_path)
    assert r.returncode == 0 and wf.read_text() == first


def test_foreign_workflow_is_not_replaced(tmp_path):
    wf = tmp_path / "mine.yml"
    wf.write_text("name: mine\non: push\njobs: {}\n")
    r = forge("ci", "github", "-o", str(wf), cwd=tmp_path)
    assert r.returncode == errors.UserFileChanged.exit_code
    assert wf.read_text() == "name: mine\non: push\njobs: {}\n"


def test_run_scripts_are_valid_bash():
    import ruamel.yaml as ruamel  # noqa: PLC0415 (installed with check-jsonschema)
    for text in (render_workflow(image="docker.io/acme/edge"), render_workflow(dockerfile=True)):
        doc = ruamel.YAML(typ="safe").load(text)
        scripts = {s.get("name", s.get("uses")): s["run"] for s in doc["jobs"]["deploy"]["steps"] if "run" in s}
        assert len(scripts) >= 5
        for name, script in scripts.items():
            check = subprocess.run(["bash", "-n", "-c", script], capture_output=True, text=True)
            assert check.returncode == 0, f"{name}: {check.stderr}"
    # without a forge requirement the install step stops with a GitHub error annotation
    install = scripts["Install forge"]
    r = subprocess.run(["bash", "-e", "-c", install], capture_output=True, text=True,
                       env={**os.environ, "FORGE_PIP_SPEC": ""})
    assert r.returncode == 1 and r.stdout.startswith("::error::set the repository variable FORGE_PIP_SPEC")
