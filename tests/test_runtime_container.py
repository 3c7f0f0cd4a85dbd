"""The runtime's server tests, run again against forge-built binaries in containers (read-only
rootfs, user 65532): the shape they are deployed in. Every server test runs, the ASGI lifespan and
async ones included; tests that hand the app file paths get their tmp dirs through a bind mount of
one shared directory (run_in_container.sh). Only the CLI test (CPython's `-m forge_runtime` by
nature) and the examples (built and served in containers by tests/test_build.py) are left out."""

import os
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from tests.test_runtime_support import ServerProcess, request

pytestmark = [pytest.mark.sdk, pytest.mark.docker, pytest.mark.timeout(2400)]
HERE = Path(__file__).resolve().parent
RUNNER = f"bash {HERE / 'test_runtime_apps' / 'run_in_container.sh'} {{app_dir}} {{module}} {{attr}}"
APPS = ("handler_app", "wsgi_app", "async_app", "asgi_app", "asgi_nolifespan")
NOT_IN_CONTAINER = ("test_cli_usage_errors", "test_examples")


@pytest.fixture(scope="module")
def container_env(sdk, docker_client, tmp_path_factory):
    # Outside pytest's own 0700 tree, so the mount needs no permissions above it.
    share = Path(tempfile.mkdtemp(prefix="forge-container-tests-"))
    share.chmod(stat.S_IRWXU | stat.S_IRWXG | stat.S_IRWXO)
    yield {**os.environ, "FORGE_RUNTIME_SERVER_CMD": RUNNER, "FORGE_TEST_SHARE": str(share),
           "FORGE_BUILT_DIR": str(tmp_path_factory.mktemp("built"))}
    # A server that outlived its test (killed client) would hold on to the machine: none may remain.
    leftovers = docker_client.containers.list(all=True, filters={"label": f"forge-runtime-test={share.name}"})
    for c in leftovers:
        c.remove(force=True)
    subprocess.run(["rm", "-rf", str(share)], check=False)
    assert not leftovers, [c.name for c in leftovers]


def test_server_suite_against_containers(container_env):
    # Build (and load) every app first: a test waits only 30 s for its server.
    for module in APPS:
        cmd = RUNNER.format(app_dir=HERE / "test_runtime_apps", module=module, attr="app")
        built = subprocess.run(["bash", "-c", cmd], env={**container_env, "FORGE_BUILD_ONLY": "1", "PORT": "0"},
                               capture_output=True, text=True, timeout=900)
        assert built.returncode == 0, built.stderr[-3000:]
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(HERE / "test_runtime_server.py"),
         str(HERE / "test_runtime_watchdog.py"),
         "--basetemp", os.path.join(container_env["FORGE_TEST_SHARE"], "pytest"),
         "-k", " and ".join(f"not {name}" for name in NOT_IN_CONTAINER)],
        env=container_env, capture_output=True, text=True, timeout=1500, cwd=HERE.parent)
    tail = proc.stdout[-4000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, tail
    summary = proc.stdout.strip().splitlines()[-1]
    # Everything selected ran and passed: nothing skipped, and only the left-out tests deselected.
    assert " passed" in summary and not any(w in summary for w in ("failed", "skipped", "error")), tail
    deselected = int(summary.split(" deselected")[0].rsplit(" ", 1)[-1]) if "deselected" in summary else 0
    assert deselected == 4, summary  # test_cli_usage_errors + test_examples[hello, asgi, wsgi]


def test_sigterm_with_request_in_flight_in_container(container_env, tmp_path):
    srv = ServerProcess("handler_app:app", env={**container_env, "FORGE_DRAIN_SECONDS": "20"},
                        cmd=RUNNER, tmp_path=str(tmp_path))
    try:
        srv.wait_ready(timeout=120)
        result = {}
        t = threading.Thread(target=lambda: result.update(r=request(srv.port, "GET", "/sleep?s=1.5", timeout=30)))
        t.start()
        time.sleep(0.5)  # the request is in the handler now
        srv.signal()
        t.join(30)
        status, _, body = result["r"]
        assert (status, body) == (200, b"slept")
        assert srv.wait(30) == 0
    finally:
        srv.stop()
