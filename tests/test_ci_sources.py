"""The generated CI workflow's job runs in a Debian image, where forge's source routes must find their
pins from an empty cache: tested here in a Debian container started from a locally built root
filesystem (the bench's slim rootfs, debootstrapped from this machine's archive), with nothing of the
host's apt configuration or cache inside it."""

import json
from pathlib import Path

import pytest

from forge.bench.baselines import docker_import, slim_rootfs
from forge.ci import CI_CONTAINER
from forge.sdk.sources import CPYTHON, DEFAULT_PYTHON
from tests.plugins.docker_engine import loaded_tag, unique_tag

pytestmark = pytest.mark.docker
REPO = Path(__file__).resolve().parent.parent

# The default SDK's CPython (from a newer suite than the container's own) and 3.14's (the pool
# route): the pins the apt configuration of a bare Debian image does not carry.
FETCH = """
import json, sys
from pathlib import Path
from forge.sdk import sources
cache = Path("/cache")
got = {}
with open("/cache/fetch.log", "ab") as log:
    for minor in sys.argv[1:]:
        src = sources.CPYTHON[minor]
        got[minor] = sources.fetch(src, cache, log).name
print(json.dumps(got))
"""


def test_workflow_container_fetches_the_pins_from_an_empty_cache(docker_client, tmp_path):
    assert CI_CONTAINER.startswith("debian:")
    rootfs, _ = slim_rootfs()
    with loaded_tag(docker_client, unique_tag("debian-ci")) as tag:
        docker_import(docker_client, rootfs, tag, [])
        (tmp_path / "fetch.py").write_text(FETCH)
        cache = tmp_path / "cache"
        cache.mkdir()
        minors = [DEFAULT_PYTHON, *(m for m in CPYTHON if m != DEFAULT_PYTHON)]
        out = docker_client.containers.run(
            tag, ["sh", "-c", "apt-get update -qq >/dev/null && python3 /work/fetch.py " + " ".join(minors)],
            environment={"PYTHONPATH": "/src"}, network_mode="host", remove=True,
            volumes={str(REPO): {"bind": "/src", "mode": "ro"}, str(tmp_path): {"bind": "/work", "mode": "ro"},
                     str(cache): {"bind": "/cache", "mode": "rw"}},
            stdout=True, stderr=True)
    got = json.loads(out.decode().strip().splitlines()[-1])
    assert got == {m: CPYTHON[m].filename for m in minors}
    for m in minors:
        assert (cache / "sources" / CPYTHON[m].filename).stat().st_size > 10_000_000
