"""The runtime's server tests, run again against a forge-built binary in a container (read-only
rootfs, user 65532): the shape it is deployed in. Tests that coordinate with the app through files
in the test's tmp dir can't see into the container and stay CPython/host-only; the in-flight
SIGTERM drain is covered here with a sleeping request instead."""

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.test_runtime_support import ServerProcess, request

pytestmark = [pytest.mark.sdk, pytest.mark.docker, pytest.mark.timeout(1800)]
HERE = Path(__file__).resolve().parent
RUNNER = f"bash {HERE / 'test_runtime_apps' / 'run_in_container.sh'} {{app_dir}} {{module}} {{attr}}"

# Server tests that use only sockets (no files shared with the app).
SOCKET_ONLY = [
    "test_hello_and_return_types", "test_request_fields", "test_percent_decoded_path",
    "test_keep_alive_sequential_and_pipelined", "test_http10_keep_alive_rules",
    "test_chunked_response_streaming", "test_async_iterator_body_from_sync_handler",
    "test_chunked_request_body", "test_expect_100_continue", "test_head_has_no_body",
    "test_handler_errors_are_500_and_server_survives", "test_large_response_backpressure",
    "test_body_too_large_413", "test_413_reaches_a_client_that_keeps_uploading",
    "test_headers_too_large_431", "test_malformed_requests_get_400_and_server_keeps_serving",
    "test_bad_request_after_good_one_on_same_connection", "test_ping_probe",
    "test_100_parallel_clients", "test_idle_keepalive_connection_is_closed",
    "test_slowloris_gets_408_and_does_not_hold_the_server", "test_access_log_is_json_per_request",
    "test_access_log_can_be_switched_off", "test_env_is_passed_through",
    "test_wsgi_environ_pep3333", "test_wsgi_responses", "test_lean_loop_does_not_import_asyncio_or_logging",
]


@pytest.fixture(scope="module")
def container_env(sdk, docker_client, tmp_path_factory):
    return {**os.environ, "FORGE_RUNTIME_SERVER_CMD": RUNNER,
            "FORGE_BUILT_DIR": str(tmp_path_factory.mktemp("built"))}


def test_server_suite_against_containers(container_env):
    # Build (and load) the two apps first: a test waits only 30 s for its server.
    for module in ("handler_app", "wsgi_app"):
        cmd = RUNNER.format(app_dir=HERE / "test_runtime_apps", module=module, attr="app")
        built = subprocess.run(["bash", "-c", cmd], env={**container_env, "FORGE_BUILD_ONLY": "1", "PORT": "0"},
                               capture_output=True, text=True, timeout=900)
        assert built.returncode == 0, built.stderr[-3000:]
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(HERE / "test_runtime_server.py"),
         "-k", " or ".join(SOCKET_ONLY)],
        env=container_env, capture_output=True, text=True, timeout=1500, cwd=HERE.parent)
    tail = proc.stdout[-4000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, tail
    assert " passed" in proc.stdout and "failed" not in proc.stdout.splitlines()[-1], tail


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
