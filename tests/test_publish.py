"""The file publishers: OCI image layout and docker archive (no Docker needed; test_publish_docker
loads them into a real engine)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tarfile
from pathlib import Path

import pytest

from forge import errors
from forge.image.build import ImageSpec, build_image
from forge.image.model import OCI_CONFIG, OCI_INDEX, OCI_MANIFEST
from forge.publish import (DaemonPublisher, DockerArchivePublisher, OciLayoutPublisher, Publisher,
                           PublishResult)
from forge.publish.docker_archive import archive_bytes, normalize_tag

# OCI image-spec descriptor.md: the digest grammar, and RFC 6838 media types.
DIGEST = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")
SHA256 = re.compile(r"^sha256:[a-f0-9]{64}$")
MEDIA_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$")


@pytest.fixture(scope="module")
def image(floor_app):
    return build_image(ImageSpec(app_dir=floor_app))


def check_descriptor(d: dict) -> None:
    assert isinstance(d, dict)
    assert isinstance(d["mediaType"], str) and MEDIA_TYPE.match(d["mediaType"]), d
    assert isinstance(d["digest"], str) and DIGEST.match(d["digest"]) and SHA256.match(d["digest"]), d
    assert isinstance(d["size"], int) and not isinstance(d["size"], bool) and d["size"] >= 0, d
    for k, v in (d.get("annotations") or {}).items():
        assert isinstance(k, str) and isinstance(v, str)


def verify_oci_layout(root: Path, files: dict[str, bytes]) -> dict:
    """Checks an OCI image layout (image-spec image-layout.md, image-index.md, manifest.md, config.md)
    given its files; returns index.json. Every blob must hash to its name, every descriptor must
    match its blob, and every blob must be reachable from index.json."""
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads(files["index.json"])
    assert index["schemaVersion"] == 2 and index["mediaType"] == OCI_INDEX
    assert isinstance(index["manifests"], list) and index["manifests"]
    blobs = {k: v for k, v in files.items() if k.startswith("blobs/")}
    for name, data in blobs.items():
        algo, _, hexd = name.removeprefix("blobs/").partition("/")
        assert algo == "sha256" and hashlib.sha256(data).hexdigest() == hexd, name
    reached = set()

    def blob(d: dict) -> bytes:
        check_descriptor(d)
        name = "blobs/sha256/" + d["digest"].split(":", 1)[1]
        assert name in blobs, f"{root}: {name} missing"
        assert len(blobs[name]) == d["size"]
        reached.add(name)
        return blobs[name]

    for md in index["manifests"]:
        assert md["mediaType"] == OCI_MANIFEST
        manifest = json.loads(blob(md))
        assert manifest["schemaVersion"] == 2 and manifest["mediaType"] == OCI_MANIFEST
        assert manifest["config"]["mediaType"] == OCI_CONFIG
        config = json.loads(blob(manifest["config"]))
        assert config["architecture"] == "amd64" and config["os"] == "linux"
        assert config["rootfs"]["type"] == "layers"
        assert len(config["rootfs"]["diff_ids"]) == len(manifest["layers"])
        for ld in manifest["layers"]:
            blob(ld)
    assert reached == set(blobs), f"unreferenced blobs: {set(blobs) - reached}"
    return index


def dir_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def tar_files(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tf:
        return {m.name: tf.extractfile(m).read() for m in tf if m.isfile()}


def test_publishers_satisfy_the_protocol(tmp_path):
    for p in (OciLayoutPublisher(tmp_path / "l"), DockerArchivePublisher(tmp_path / "a.tar", "x"),
              DaemonPublisher("x")):
        assert isinstance(p, Publisher)


def test_oci_layout_is_valid(image, tmp_path):
    result = OciLayoutPublisher(tmp_path / "out", ref_name="v1.0").publish(image)
    assert result == PublishResult(digest=image.digest, location=f"oci:{tmp_path / 'out'}:v1.0")
    index = verify_oci_layout(tmp_path / "out", dir_files(tmp_path / "out"))
    assert index["manifests"][0]["digest"] == image.digest
    assert index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] == "v1.0"
    assert sorted(os.listdir(tmp_path / "out")) == ["blobs", "index.json", "oci-layout"]
    assert oct((tmp_path / "out").stat().st_mode & 0o777) == "0o755"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]          # no temp files left
    # default ref name
    OciLayoutPublisher(tmp_path / "out2").publish(image)
    idx = json.loads((tmp_path / "out2" / "index.json").read_text())
    assert idx["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] == "latest"


def test_docker_archive_is_valid_and_reproducible(image, tmp_path):
    result = DockerArchivePublisher(tmp_path / "a.tar", "floor").publish(image)
    assert result.digest == image.digest and result.location == f"docker-archive:{tmp_path / 'a.tar'}"
    files = tar_files(tmp_path / "a.tar")
    index = verify_oci_layout(tmp_path / "a.tar", files)
    ann = index["manifests"][0]["annotations"]
    assert ann == {"org.opencontainers.image.ref.name": "latest", "io.containerd.image.name": "docker.io/library/floor:latest"}
    [entry] = json.loads(files["manifest.json"])
    assert entry["RepoTags"] == ["floor:latest"]
    assert entry["Config"] == "blobs/sha256/" + image.config.digest.split(":")[1]
    assert entry["Layers"] == ["blobs/sha256/" + layer.digest.split(":")[1] for layer in image.layers]
    DockerArchivePublisher(tmp_path / "b.tar", "floor").publish(image)
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    with tarfile.open(tmp_path / "a.tar") as tf:
        assert all(m.mtime == 0 and m.uid == 0 and m.uname == "" for m in tf)


@pytest.mark.parametrize("tag, short, full", [
    ("floor", "floor:latest", "docker.io/library/floor:latest"),
    ("team/floor:1.0", "team/floor:1.0", "docker.io/team/floor:1.0"),
    ("localhost:5000/floor:dev", "localhost:5000/floor:dev", "localhost:5000/floor:dev"),
    ("ghcr.io/org/app:v1", "ghcr.io/org/app:v1", "ghcr.io/org/app:v1"),
])
def test_tag_normalisation(tag, short, full):
    assert normalize_tag(tag)[:2] == (short, full)


@pytest.mark.parametrize("tag", ["", "Floor", "floor:", "floor@sha256:" + "0" * 64, "a b", "floor:-x", "Team/app"])
def test_bad_tags_refused(tag):
    with pytest.raises(errors.InvalidReference):
        normalize_tag(tag)


@pytest.mark.parametrize("ref", ["", "v 1", "-x", "a//b"])
def test_bad_ref_names_refused(ref, tmp_path):
    with pytest.raises(errors.InvalidReference):
        OciLayoutPublisher(tmp_path / "l", ref_name=ref)


def snapshot(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): (p.read_bytes() if p.is_file() else None, p.stat().st_mode)
            for p in sorted(root.rglob("*"))}


def test_foreign_directory_is_refused_and_untouched(image, tmp_path):
    foreign = tmp_path / "site"
    (foreign / "css").mkdir(parents=True)
    (foreign / "index.html").write_text("<h1>mine</h1>")
    (foreign / "css" / "a.css").write_text("body{}")
    before = snapshot(foreign)
    with pytest.raises(errors.OutputPathConflict) as exc:
        OciLayoutPublisher(foreign).publish(image)
    assert str(foreign) in exc.value.message and "choose another output path" in exc.value.message
    assert snapshot(foreign) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]     # no temp dirs left
    # an OCI layout some other tool wrote (no forge marker) is foreign too
    other = tmp_path / "other-layout"
    other.mkdir()
    (other / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (other / "index.json").write_text('{"schemaVersion":2,"manifests":[]}')
    with pytest.raises(errors.OutputPathConflict, match="did not write"):
        OciLayoutPublisher(other).publish(image)
    # a file where the layout should go
    (tmp_path / "file").write_text("x")
    with pytest.raises(errors.OutputPathConflict, match="not a directory"):
        OciLayoutPublisher(tmp_path / "file").publish(image)
    assert (tmp_path / "file").read_text() == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "other-layout", "site"]


def test_foreign_file_is_refused_and_untouched(image, tmp_path):
    (tmp_path / "notes.tar").write_bytes(b"my notes, not a tarball")
    with pytest.raises(errors.OutputPathConflict, match="not an image archive forge wrote"):
        DockerArchivePublisher(tmp_path / "notes.tar", "x").publish(image)
    assert (tmp_path / "notes.tar").read_bytes() == b"my notes, not a tarball"
    # a real docker-style tarball without forge's marker is also someone else's
    with tarfile.open(tmp_path / "theirs.tar", "w") as tf:
        ti = tarfile.TarInfo("manifest.json")
        tf.addfile(ti)
    before = (tmp_path / "theirs.tar").read_bytes()
    with pytest.raises(errors.OutputPathConflict):
        DockerArchivePublisher(tmp_path / "theirs.tar", "x").publish(image)
    assert (tmp_path / "theirs.tar").read_bytes() == before
    (tmp_path / "adir").mkdir()
    with pytest.raises(errors.OutputPathConflict, match="not a regular file"):
        DockerArchivePublisher(tmp_path / "adir", "x").publish(image)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir", "notes.tar", "theirs.tar"]


def test_forge_output_is_replaced(image, floor_app, tmp_path):
    other = build_image(ImageSpec(app_dir=floor_app, epoch=42))
    OciLayoutPublisher(tmp_path / "l").publish(image)
    inode = (tmp_path / "l").stat().st_ino
    OciLayoutPublisher(tmp_path / "l").publish(other)
    files = dir_files(tmp_path / "l")
    verify_oci_layout(tmp_path / "l", files)                     # the old blobs are gone, not merged
    assert json.loads(files["index.json"])["manifests"][0]["digest"] == other.digest
    assert (tmp_path / "l").stat().st_ino != inode              # a new directory, swapped in
    assert sorted(p.name for p in tmp_path.iterdir()) == ["l"]
    DockerArchivePublisher(tmp_path / "a.tar", "x").publish(image)
    DockerArchivePublisher(tmp_path / "a.tar", "x").publish(other)
    assert archive_bytes(other, "x") == (tmp_path / "a.tar").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar", "l"]
    # an empty directory is fine too
    (tmp_path / "empty").mkdir()
    OciLayoutPublisher(tmp_path / "empty").publish(image)
    verify_oci_layout(tmp_path / "empty", dir_files(tmp_path / "empty"))


def test_failed_write_leaves_no_temp_and_keeps_old(image, tmp_path, monkeypatch):
    OciLayoutPublisher(tmp_path / "l").publish(image)
    before = snapshot(tmp_path / "l")
    import forge.publish.oci_layout as mod

    def boom(root, files):
        (root / "partial").write_text("half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(mod, "write_files", boom)
    with pytest.raises(OSError, match="No space"):
        OciLayoutPublisher(tmp_path / "l").publish(image)
    assert snapshot(tmp_path / "l") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["l"]


def test_zstd_docker_archive_gives_docker_uncompressed_layers(floor_app, tmp_path):
    """index.json keeps the zstd blobs; manifest.json (Docker's classic loader, which reads no zstd
    before Docker 23) points at uncompressed copies stored under their diff_ids."""
    from forge.image.layer import decompress
    from forge.image.read import load_image

    image = build_image(ImageSpec(app_dir=floor_app, compression="zstd"))
    DockerArchivePublisher(tmp_path / "z.tar", "floor:z").publish(image)
    files = tar_files(tmp_path / "z.tar")
    [entry] = json.loads(files["manifest.json"])
    assert entry["Layers"] == ["blobs/sha256/" + layer.diff_id.split(":")[1] for layer in image.layers]
    for path, layer in zip(entry["Layers"], image.layers):
        assert files[path] == decompress(layer.data)
    copies = set(entry["Layers"])
    layout = {k: v for k, v in files.items() if k not in copies}
    index = verify_oci_layout(tmp_path / "z.tar", layout)
    assert index["manifests"][0]["digest"] == image.digest
    assert load_image(tmp_path / "z.tar") == image
