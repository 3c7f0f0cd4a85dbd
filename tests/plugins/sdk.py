"""The SDK fixture: builds it once per machine (a cache hit afterwards) and hands it to tests."""

import pytest

from forge.sdk.builder import build_sdk
from forge.sdk.sources import DEFAULT_PYTHON


@pytest.fixture(scope="session")
def sdk():
    return build_sdk(DEFAULT_PYTHON)
