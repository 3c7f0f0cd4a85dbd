"""The Dockerfile.scratch route: write_build_context + `docker build` give an image that runs like
forge's own (the build goes through the engine's /build API, i.e. `DOCKER_BUILDKIT=0 docker build`)."""

from __future__ import annotations

import io
import os
import stat
import tarfile

import pytest

from forge import errors
from forge.image.build import ImageSpec
from forge.image.context import dockerfile_scratch, render_dockerfile, write_build_context
from tests.plugins.docker_engine import host_port, loaded_tag, running, unique_tag, wait_http


def test_default_spec_gives_dockerfile_scratch_unchanged(floor_app):
    assert render_dockerfile(ImageSpec(app_dir=floor_app)) == dockerfile_scratch().read_text()
    text = dockerfile_scratch().read_text()
    for line in ("FROM scratch", "USER 65532:65532", "EXPOSE 8080", 'ENTRYPOINT ["/app/app"]',
                 "ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt PORT=8080"):
        assert line in text.splitlines()


def test_spec_is_written_in(floor_app):
    text = render_dockerfile(ImageSpec(app_dir=floor_app, port=9000, user="1000:1000",
                                       entrypoint=("/app/app", "--flag"), env={"GREETING": 'say "$HI"'},
                                       labels={"org.opencontainers.image.title": "floor"}))
    lines = text.splitlines()
    assert "USER 1000:1000" in lines and "EXPOSE 9000" in lines
    assert "ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt PORT=9000" in lines
    assert 'ENV GREETING="say \\"\\$HI\\""' in lines
    assert 'LABEL "org.opencontainers.image.title"="floor"' in lines
    assert lines[-1] == 'ENTRYPOINT ["/app/app", "--flag"]'


def test_context_layout(floor_app, tmp_path):
    ctx = write_build_context(ImageSpec(app_dir=floor_app), tmp_path / "ctx")
    assert sorted(os.listdir(ctx)) == ["Dockerfile", "app", "nonroot-home", "rootfs"]
    assert stat.S_IMODE((ctx / "rootfs" / "tmp").stat().st_mode) == 0o1777
    assert (ctx / "rootfs" / "etc" / "ssl" / "certs" / "ca-certificates.crt").is_file()
    assert not (ctx / "rootfs" / "home" / "nonroot").exists()      # made by COPY --chown
    assert not (ctx / "rootfs" / "usr").exists()
    assert list((ctx / "nonroot-home").iterdir()) == []
    assert stat.S_IMODE((ctx / "app" / "app").stat().st_mode) == 0o755
    assert (ctx / "app" / "app").read_bytes() == (floor_app / "app").read_bytes()
    # a forge context is replaced; zoneinfo appears when asked
    write_build_context(ImageSpec(app_dir=floor_app, include_zoneinfo=True), ctx)
    assert (ctx / "rootfs" / "usr" / "share" / "zoneinfo" / "Europe" / "London").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ctx"]


def test_foreign_context_dir_is_refused(floor_app, tmp_path):
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "Dockerfile").write_text("FROM debian\n")
    with pytest.raises(errors.OutputPathConflict, match="not a forge build context"):
        write_build_context(ImageSpec(app_dir=floor_app), tmp_path / "proj")
    assert (tmp_path / "proj" / "Dockerfile").read_text() == "FROM debian\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["proj"]


@pytest.mark.docker
@pytest.mark.timeout(300)
def test_docker_build_runs_and_answers_http(docker_client, floor_app, tmp_path):
    spec = ImageSpec(app_dir=floor_app, labels={"org.opencontainers.image.title": "floor"})
    ctx = write_build_context(spec, tmp_path / "ctx")
    tag = unique_tag("dockerfile")
    with loaded_tag(docker_client, tag):
        image, _logs = docker_client.images.build(path=str(ctx), tag=tag, rm=True, forcerm=True, pull=False)
        cfg = image.attrs["Config"]
        assert cfg["Entrypoint"] == ["/app/app"] and cfg["User"] == "65532:65532"
        assert "8080/tcp" in cfg["ExposedPorts"]
        assert "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt" in cfg["Env"] and "PORT=8080" in cfg["Env"]
        assert cfg["Labels"] == {"org.opencontainers.image.title": "floor"}
        with running(docker_client, tag, read_only=True, user="65532",
                     ports={"8080/tcp": ("127.0.0.1",)}) as c:
            r = wait_http(c, f"http://127.0.0.1:{host_port(c)}/", timeout=20)
            assert r.status_code == 200 and r.text == "ok\n"
        c = docker_client.containers.create(tag)
        try:
            data = b"".join(c.export())
        finally:
            c.remove(force=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        m = {x.name.rstrip("/"): x for x in tf.getmembers()}
    assert m["tmp"].mode & 0o7777 == 0o1777
    assert (m["home/nonroot"].uid, m["home/nonroot"].gid) == (65532, 65532)
    assert (m["app/app"].uid, m["app/app"].mode & 0o777) == (0, 0o755)
