"""The SDK's sources come through the machine's own apt configuration when upstream is out of reach."""

import shutil

import pytest

from forge.cache import sha256_file
from forge.sdk import sources

ZLIB = next(s for s in sources.LIBRARIES if s.name == "zlib")


@pytest.mark.skipif(shutil.which("apt-get") is None, reason="the apt route exists on Debian hosts only")
def test_apt_route_fetches_the_pinned_orig_into_a_fresh_cache(tmp_path):
    with open(tmp_path / "fetch.log", "ab") as log:
        got = sources.fetch(ZLIB, tmp_path, log)
    assert got == tmp_path / "sources" / ZLIB.filename
    assert sha256_file(got) == ZLIB.sha256
    # Nothing but the verified file is left in the store (no .dsc, no Debian patches, no temp dirs).
    assert sorted(p.name for p in (tmp_path / "sources").iterdir()) == [ZLIB.filename]

