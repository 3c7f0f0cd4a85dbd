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


SHOWSRC = f"""Package: zlib
Version: 1:1.2.13.dfsg-1
Checksums-Sha256:
 {ZLIB.sha256} 1239825 {ZLIB.filename}
 0000000000000000000000000000000000000000000000000000000000000000 19000 zlib_1.2.13.dfsg-1.debian.tar.xz

Package: zlib
Version: 1:1.2.13.dfsg-1+deb12u1
Checksums-Sha256:
 {ZLIB.sha256} 1239825 {ZLIB.filename}

Package: zlib
Version: 1:1.2.13.dfsg-1
Checksums-Sha256:
 {ZLIB.sha256} 1239825 {ZLIB.filename}

Package: zlib
Version: 1:1.3.dfsg-3
Checksums-Sha256:
 1111111111111111111111111111111111111111111111111111111111111111 1300000 zlib_1.3.dfsg.orig.tar.bz2

Package: zlib-ng
Version: 2.1.6-1
Checksums-Sha256:
 {ZLIB.sha256} 1239825 {ZLIB.filename}
"""


def test_versions_carrying_the_pin_in_showsrc_output():
    # Each version once, in apt's order; not a version with another orig; not another package.
    assert sources.versions_carrying(SHOWSRC, ZLIB) == ["1:1.2.13.dfsg-1", "1:1.2.13.dfsg-1+deb12u1"]
    assert sources.versions_carrying("", ZLIB) == []
