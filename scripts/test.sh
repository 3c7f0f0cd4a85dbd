#!/usr/bin/env bash
# The whole test suite with all of its set-up: system packages, the venv, the Docker engine, then
# pytest. The SDK is built by the first test that needs it and cached (~/.cache/forge) afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh --test
bash scripts/start-dockerd.sh
export TESTCONTAINERS_RYUK_DISABLED=true
.venv/bin/ruff check .    # [tool.ruff] in pyproject.toml
exec .venv/bin/python -m pytest -ra "$@"
