"""The one layer decompressor (forge.image.layer.iter_decompressed) and the one atomic-write helper (forge.fsio)."""

import gzip

import pytest
import zstandard

from forge import errors
from forge.fsio import atomic_dir
from forge.image.layer import decompress, uncompressed_length

TAR = bytes(range(256)) * 9000  # more than one 1 MiB chunk


@pytest.mark.parametrize("blob", [gzip.compress(TAR), gzip.compress(TAR[:1000]) + gzip.compress(TAR[1000:]),
                                  zstandard.ZstdCompressor().compress(TAR), TAR])
def test_decompress_and_length_agree(blob):
    assert decompress(blob) == TAR
    assert uncompressed_length("application/vnd.oci.image.layer.v1.tar+gzip", blob) == len(TAR)


def test_truncated_gzip_is_invalid_image():
    with pytest.raises(errors.InvalidImage):
        decompress(gzip.compress(TAR)[:-20])
    with pytest.raises(errors.InvalidImage):
        uncompressed_length("application/vnd.oci.image.layer.v1.tar+gzip", gzip.compress(TAR)[:-20])


def test_atomic_dir_replaces_whole_or_not_at_all(tmp_path):
    final = tmp_path / "out"
    with atomic_dir(final) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(RuntimeError), atomic_dir(final) as tmp:
        (tmp / "b").write_text("2")
        raise RuntimeError
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and [p.name for p in final.iterdir()] == ["a"]
    (tmp_path / "file").write_text("x")
    with atomic_dir(tmp_path / "file") as tmp:
        (tmp / "c").write_text("3")
    assert (tmp_path / "file" / "c").read_text() == "3"
