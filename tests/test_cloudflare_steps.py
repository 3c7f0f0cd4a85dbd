"""Workflow steps in forge_runtime (no Node needed): every app kind answers POST /_forge/steps/NAME, the
app's own routes are untouched, a step past its X-Forge-Step-Timeout gets 504 while the server keeps
serving, and importing forge_runtime does not load the client."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import requests

from tests.plugins.registry import free_port

APPS = {
    "handler": "def app(request):\n    return 'app'\n",
    "async": "async def app(request):\n    return 'app'\n",
    "wsgi": "def app(environ, start_response):\n    start_response('200 OK', [])\n    return [b'app']\n",
    "asgi": ("async def app(scope, receive, send):\n    if scope['type'] != 'http':\n        return\n"
             "    await send({'type': 'http.response.start', 'status': 200, 'headers': []})\n"
             "    await send({'type': 'http.response.body', 'body': b'app'})\n"),
}
STEPS = '''
import time
import forge_runtime
from forge_runtime import cloudflare

@forge_runtime.step("double")
def double(params, outputs):
    return {"n": params["n"] * 2, "seen": sorted(outputs)}

@forge_runtime.step("stuck", timeout="1 second")
def stuck(params, outputs):
    time.sleep(30)

@forge_runtime.step("refuse")
def refuse(params, outputs):
    raise cloudflare.StepFailed("no")

@forge_runtime.step("boom")
def boom(params, outputs):
    raise KeyError("x")
'''


@pytest.mark.parametrize("kind", list(APPS))
def test_steps_for_every_app_kind(kind, tmp_path):
    (tmp_path / "app.py").write_text(STEPS + APPS[kind])
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "forge_runtime", "app:app", "--port", str(port)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                assert requests.get(base + "/", timeout=2).text == "app"
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        r = requests.post(base + "/_forge/steps/double", json={"params": {"n": 21}, "outputs": {"a": 1}}, timeout=5)
        assert r.status_code == 200 and r.json() == {"n": 42, "seen": ["a"]}
        r = requests.post(base + "/_forge/steps/refuse", json={}, timeout=5)
        assert r.status_code == 422 and r.json()["error"] == {"message": "no", "retry": False}
        r = requests.post(base + "/_forge/steps/boom", json={}, timeout=5)
        assert r.status_code == 500 and r.json()["error"]["retry"] is True and "KeyError" in r.json()["error"]["message"]
        assert requests.post(base + "/_forge/steps/nope", json={}, timeout=5).status_code == 404
        t0 = time.monotonic()
        r = requests.post(base + "/_forge/steps/stuck", json={}, headers={"X-Forge-Step-Timeout": "1"}, timeout=10)
        assert r.status_code == 504 and "past its timeout" in r.text
        assert time.monotonic() - t0 < 5
        assert requests.get(base + "/", timeout=2).text == "app"            # still serving
    finally:
        proc.terminate()
        proc.wait(15)


def test_client_is_not_imported_at_start_up():
    code = ("import sys, forge_runtime; assert 'forge_runtime.cloudflare' not in sys.modules; "
            "assert 'http.client' not in sys.modules; forge_runtime.cloudflare; "
            "assert 'forge_runtime.cloudflare' in sys.modules; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "ok", out.stderr
