"""The SDK fixtures: each builds its SDK once per machine (a cache hit afterwards).

`sdk` is the default SDK. `each_sdk` runs a test once per SDK version under test: the default,
plus the versions in FORGE_TEST_PYTHONS (e.g. "3.14"), which CI leaves out for time.
"""

import os

import pytest

from forge.sdk.builder import build_sdk
from forge.sdk.sources import DEFAULT_PYTHON, WASM_HOST_PYTHON


def pythons_under_test() -> list[str]:
    extra = [v.strip() for v in os.environ.get("FORGE_TEST_PYTHONS", "").split(",") if v.strip()]
    return [DEFAULT_PYTHON, *[v for v in extra if v != DEFAULT_PYTHON]]


@pytest.fixture(scope="session")
def sdk():
    return build_sdk(DEFAULT_PYTHON)


@pytest.fixture(scope="session", params=pythons_under_test(), ids=lambda v: f"py{v}")
def each_sdk(request):
    return build_sdk(request.param)


@pytest.fixture(scope="session")
def wasm_host_sdk():
    """The wasm target's host SDK (CPython 3.11, forge/sdk/wasm-host/): built once, cached."""
    return build_sdk(WASM_HOST_PYTHON)
