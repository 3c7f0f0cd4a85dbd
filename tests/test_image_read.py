"""forge.image.read.load_image: reads back what the publishers write, and trusts no blob."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from forge import errors
from forge.image.build import ImageSpec, assemble, build_image
from forge.image.layer import decompress
from forge.image.read import load_image
from forge.publish import DockerArchivePublisher, OciLayoutPublisher


@pytest.fixture(scope="module")
def image(floor_app):
    return build_image(ImageSpec(app_dir=floor_app, labels={"org.opencontainers.image.title": "floor"}))


@pytest.fixture
def layout(image, tmp_path) -> Path:
    OciLayoutPublisher(tmp_path / "layout").publish(image)
    return tmp_path / "layout"


def blob_path(layout: Path, digest: str) -> Path:
    return layout / "blobs" / "sha256" / digest.split(":", 1)[1]


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_round_trip_oci_layout_and_archive(floor_app, tmp_path, compression):
    image = build_image(ImageSpec(app_dir=floor_app, compression=compression, include_zoneinfo=True))
    OciLayoutPublisher(tmp_path / "l", ref_name="v1").publish(image)
    DockerArchivePublisher(tmp_path / "a.tar", "floor:v1").publish(image)
    for path in (tmp_path / "l", tmp_path / "a.tar", str(tmp_path / "l")):
        back = load_image(path)
        assert back == image          # every blob, media type, diff_id and size
        assert back.digest == image.digest
    assert load_image(tmp_path / "l", ref_name="v1") == image
    with pytest.raises(errors.InvalidImage, match="no image named 'v2'"):
        load_image(tmp_path / "l", ref_name="v2")


def test_corrupt_layer_blob(image, layout):
    p = blob_path(layout, image.layers[1].digest)
    data = bytearray(p.read_bytes())
    data[100] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(errors.InvalidImage, match=r"layer 1 blob .* is corrupt: its content hashes to sha256:"):
        load_image(layout)


def test_corrupt_config_and_manifest(image, layout):
    p = blob_path(layout, image.config.digest)
    p.write_bytes(p.read_bytes().replace(b"65532:65532", b"0:0        "))
    with pytest.raises(errors.InvalidImage, match="image config blob"):
        load_image(layout)
    p.write_bytes(image.config.data)
    m = blob_path(layout, image.manifest.digest)
    m.write_bytes(m.read_bytes() + b" ")
    with pytest.raises(errors.InvalidImage, match="image manifest blob"):
        load_image(layout)


def test_size_mismatch_in_descriptor(image, layout):
    index = json.loads((layout / "index.json").read_text())
    index["manifests"][0]["size"] += 1
    (layout / "index.json").write_text(json.dumps(index))
    with pytest.raises(errors.InvalidImage, match="descriptor says"):
        load_image(layout)


def test_missing_blob_and_files(image, layout):
    blob_path(layout, image.layers[0].digest).unlink()
    with pytest.raises(errors.InvalidImage, match="layer 0 .* is missing"):
        load_image(layout)
    (layout / "oci-layout").unlink()
    with pytest.raises(errors.InvalidImage, match="oci-layout"):
        load_image(layout)


def test_layer_that_does_not_match_its_diff_id(image, floor_app, tmp_path):
    """A blob that matches its descriptor but not the config's diff_id (a swapped layer) is refused."""
    other = build_image(ImageSpec(app_dir=floor_app, epoch=99))
    swapped = assemble(json.loads(image.config.data), [image.layers[0], other.layers[1]])
    assert swapped.config == image.config
    OciLayoutPublisher(tmp_path / "l").publish(swapped)
    with pytest.raises(errors.InvalidImage, match="diff_id"):
        load_image(tmp_path / "l")


def test_refuses_unsafe_digest(image, layout):
    index = json.loads((layout / "index.json").read_text())
    index["manifests"][0]["digest"] = "sha256:../../../etc/passwd"
    (layout / "index.json").write_text(json.dumps(index))
    with pytest.raises(errors.InvalidImage, match="sha256 digests only"):
        load_image(layout)


def test_not_an_image(tmp_path):
    with pytest.raises(errors.InvalidImage, match="does not exist"):
        load_image(tmp_path / "nothing")
    (tmp_path / "d").mkdir()
    with pytest.raises(errors.InvalidImage, match="neither index.json"):
        load_image(tmp_path / "d")
    (tmp_path / "f.tar").write_bytes(b"hello")
    with pytest.raises(errors.InvalidImage, match="not an OCI image layout directory nor a readable tarball|neither"):
        load_image(tmp_path / "f.tar")


def test_legacy_docker_archive(image, tmp_path):
    """The docker-archive shape older `docker save` writes (manifest.json, <id>.json, <id>/layer.tar)
    is read, verified against the config and given an OCI manifest. (test_publish_docker reads a real
    `docker save` too.)"""
    cfg_hex = image.config.digest.split(":", 1)[1]
    files = {f"{cfg_hex}.json": image.config.data}
    layer_paths = []
    for i, layer in enumerate(image.layers):
        files[f"l{i}/layer.tar"] = decompress(layer.data)
        layer_paths.append(f"l{i}/layer.tar")
    files["manifest.json"] = json.dumps([{"Config": f"{cfg_hex}.json", "RepoTags": ["floor:old"],
                                          "Layers": layer_paths}]).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    (tmp_path / "old.tar").write_bytes(buf.getvalue())
    back = load_image(tmp_path / "old.tar")
    assert back.config == image.config
    assert [layer.diff_id for layer in back.layers] == [layer.diff_id for layer in image.layers]
    assert all(layer.media_type == "application/vnd.oci.image.layer.v1.tar" for layer in back.layers)
    assert load_image(tmp_path / "old.tar", ref_name="floor:old").digest == back.digest
    # a tampered layer no longer matches the config
    files["l1/layer.tar"] = files["l1/layer.tar"][:-1024] + b"\1" * 1024
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    (tmp_path / "old.tar").write_bytes(buf.getvalue())
    with pytest.raises(errors.InvalidImage, match="diff_id"):
        load_image(tmp_path / "old.tar")
