"""The SDK fixture: builds it once per machine (a cache hit afterwards) and hands it to tests."""

import pytest

from forge.sdk.builder import build_sdk
from forge.sdk.sources import DEFAULT_PYTHON, WASM_HOST_PYTHON


@pytest.fixture(scope="session")
def sdk():
    return build_sdk(DEFAULT_PYTHON)


@pytest.fixture(scope="session")
def wasm_host_sdk():
    """The wasm target's host SDK (CPython 3.11, forge/sdk/wasm-host/): built once, cached."""
    return build_sdk(WASM_HOST_PYTHON)
