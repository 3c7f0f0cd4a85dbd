"""Shared fixtures. Heavy fixtures (the SDK, dockerd, the registry) live in tests/plugins/ and are
session-scoped: the SDK is built once per machine (cached on disk), daemons once per test run."""

import os

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")  # its helper image can't be pulled

pytest_plugins = [
    "tests.plugins.sdk",
    "tests.plugins.docker_engine",
    "tests.plugins.registry",
    "tests.plugins.wrangler",
    "tests.test_runtime_support",  # start_server (the runtime tests' server factory)
]
