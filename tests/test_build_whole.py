"""Issue 13 on real builds: dependencies whole (imports by string, entry points), every build started
once before it is called good, and the measured Django build.

Real packages from PyPI, built with the SDK, run in a container read-only as 65532.
"""

import base64
import hashlib
import json
import subprocess
import textwrap
import time
import zipfile
from pathlib import Path

import pytest
import requests

from tests.helpers import run_forge
from tests.plugins.docker_engine import host_port, loaded_tag, running, unique_tag, wait_http

pytestmark = pytest.mark.sdk

DJANGO_APP = '''
from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY="forge-test-not-secret",
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    MIDDLEWARE=["django.middleware.common.CommonMiddleware"],
    APPEND_SLASH=True,
)

from django.http import HttpResponse, JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402


def index(request):
    return HttpResponse("hello from django")


def greet(request):
    return JsonResponse({"hello": request.GET.get("name", "world"), "n": int(request.GET.get("n", "1"))})


urlpatterns = [path("", index), path("greet/", greet)]

from django.core.wsgi import get_wsgi_application  # noqa: E402

app = get_wsgi_application()
'''


def _build(*args, expect: int = 0, timeout: float = 1800) -> tuple[dict | None, subprocess.CompletedProcess]:
    r = run_forge("build", *map(str, args), "--json", timeout=timeout)
    assert r.returncode == expect, r.stdout[-2000:] + r.stderr[-4000:]
    return (json.loads(r.stdout) if expect == 0 else None), r


def _no_output(out: Path) -> bool:
    return not out.exists() and not list(out.parent.glob(f".{out.name}.tmp-*"))


@pytest.fixture(scope="module")
def django_build(sdk, docker_client, tmp_path_factory):
    proj = tmp_path_factory.mktemp("django") / "site"
    proj.mkdir()
    (proj / "app.py").write_text(DJANGO_APP)
    (proj / "requirements.txt").write_text("django==5.2.19\n")
    tag = unique_tag("django")
    started = time.monotonic()
    summary, _ = _build(proj / "app.py", "-o", proj.parent / "out", "--format", "docker-archive",
                        "--tag", tag)
    seconds = time.monotonic() - started
    print(f"\ndjango build: {seconds:.1f}s, binary {summary['binary_size'] / 2**20:.1f} MiB, "
          f"image {summary['image_size_compressed'] / 2**20:.1f} MiB, start {summary['start_seconds']}")
    return proj, summary, tag


def test_django_is_verified_and_serves_in_a_read_only_container(django_build, docker_client):
    proj, summary, tag = django_build
    assert summary["verified"] is True and summary["verify_method"] == "docker"
    assert 0 < summary["start_seconds"] < 30
    with open(summary["image"], "rb") as fh:
        docker_client.images.load(fh.read())
    with loaded_tag(docker_client, tag), running(docker_client, tag, read_only=True, user="65532",
                                                 ports={"8080/tcp": ("127.0.0.1", None)}) as c:
        base = f"http://127.0.0.1:{host_port(c)}"
        r = wait_http(c, base + "/")
        assert r.status_code == 200 and r.text == "hello from django"
        g = requests.get(base + "/greet/?name=forge&n=3", timeout=5)
        assert g.status_code == 200 and g.json() == {"hello": "forge", "n": 3}
        assert g.headers["Content-Type"] == "application/json"
        # CommonMiddleware, imported by Django from settings by its name, runs: APPEND_SLASH.
        m = requests.get(base + "/greet?name=x", timeout=5, allow_redirects=False)
        assert m.status_code == 301 and m.headers["Location"] == "/greet/?name=x"


def test_unchanged_django_rebuild_is_a_cache_hit(django_build, tmp_path):
    proj, first, _ = django_build
    again, _ = _build(proj / "app.py", "-o", tmp_path / "again", "--format", "docker-archive",
                      "--tag", first["tag"])
    assert again["cached_compile"] is True and again["verify_cached"] is True
    assert again["digest"] == first["digest"]
    assert again["build_seconds"] < 30


def _wheel(dest: Path, name: str, version: str, files: dict[str, str], entry_points: str) -> Path:
    """A pure wheel written by hand (no build backend needed)."""
    dist_info = f"{name}-{version}.dist-info"
    files = {**files,
             f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
             f"{dist_info}/WHEEL": "Wheel-Version: 1.0\nGenerator: forge-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
             f"{dist_info}/entry_points.txt": entry_points}
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    record.append(f"{dist_info}/RECORD,,")
    whl = dest / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as z:
        for path, text in files.items():
            z.writestr(path, text)
        z.writestr(f"{dist_info}/RECORD", "\n".join(record) + "\n")
    return whl


def test_a_plugin_found_through_entry_points_works_in_the_binary(sdk, tmp_path):
    proj = tmp_path / "host"
    proj.mkdir()
    whl = _wheel(proj, "forge_greeters", "1.2.0", {
        "forge_greeters/__init__.py": "",
        # Nothing imports this module by a static import: only the entry point names it.
        "forge_greeters/loud.py": "def greet(name):\n    return f'HELLO, {name.upper()}!'\n",
        "forge_greeters/templates/banner.txt": "=== greeters ===\n",
    }, "[forge_test.greeters]\nloud = forge_greeters.loud:greet\n")
    (proj / "requirements.txt").write_text(f"./{whl.name}\n")
    (proj / "main.py").write_text(textwrap.dedent('''
        import sys
        from importlib.metadata import entry_points, version
        from importlib.resources import files

        plugins = {ep.name: ep.load() for ep in entry_points(group="forge_test.greeters")}
        print(files("forge_greeters").joinpath("templates/banner.txt").read_text(), end="")
        print(version("forge_greeters"), sorted(plugins))
        print(plugins["loud"](sys.argv[1] if len(sys.argv) > 1 else "world"))
    '''))
    summary, _ = _build(proj / "main.py", "-o", tmp_path / "out")
    assert summary["verified"] is True
    got = subprocess.run([summary["binary"], "forge"], capture_output=True, text=True, env={}, timeout=60)
    assert got.returncode == 0, got.stderr
    assert got.stdout == "=== greeters ===\n1.2.0 ['loud']\nHELLO, FORGE!\n"


def test_a_workload_raising_at_import_fails_the_build_and_no_verify_builds_it(sdk, tmp_path):
    proj = tmp_path / "boom"
    proj.mkdir()
    (proj / "app.py").write_text(textwrap.dedent('''
        import os

        if not os.environ.get("BOOM_CONFIG"):
            raise RuntimeError("BOOM_CONFIG is not set")


        def app(request):
            return "ok"
    '''))
    out = tmp_path / "out"
    _, r = _build(proj / "app.py", "-o", out, expect=29)
    assert "does not start" in r.stderr and "RuntimeError: BOOM_CONFIG is not set" in r.stderr
    assert "--no-verify" in r.stderr and "Traceback" in r.stderr   # the binary's own lines, quoted
    assert _no_output(out)
    summary, _ = _build(proj / "app.py", "-o", out, "--no-verify")
    assert summary["verified"] is False and summary["verify_method"] == "skipped"
    assert summary["cached_compile"] is True     # the failed build's compile was kept
    assert Path(summary["binary"]).is_file()


def test_a_program_passes_without_its_input_and_a_failing_import_fails(sdk, tmp_path):
    good = tmp_path / "wc"
    good.mkdir()
    (good / "counting.py").write_text("def count(text):\n    return len(text.split())\n")
    (good / "wc.py").write_text('"""Count words on stdin."""\nimport sys\n\nimport counting\n\n'
                                "print(counting.count(sys.stdin.read()))\n")
    summary, _ = _build(good / "wc.py", "-o", tmp_path / "wc-out")
    assert summary["verified"] is True
    got = subprocess.run([summary["binary"]], input="a b c\n", capture_output=True, text=True, env={},
                         timeout=60)
    assert got.returncode == 0 and got.stdout == "3\n", got.stderr

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "settings_loader.py").write_text("raise ImportError('settings_loader needs /etc/thing.conf')\n")
    (bad / "tool.py").write_text("import sys\nimport settings_loader\n\nprint(sys.argv)\n")
    out = tmp_path / "bad-out"
    _, r = _build(bad / "tool.py", "-o", out, expect=29)
    assert "import check" in r.stderr and "settings_loader needs /etc/thing.conf" in r.stderr
    assert _no_output(out)
