"""forge.output: the typed build result, its marker, and the Workers size verdict build and deploy share."""

import dataclasses
import os

import pytest

from forge import output
from forge.deploy import platform


def test_round_trip_native(tmp_path):
    summary = {"name": "app", "target": "native", "digest": "sha256:ab", "image": str(tmp_path / "image"),
               "binary": str(tmp_path / "app"), "layers": [{"digest": "sha256:cd", "size": 3}]}
    written = output.write(tmp_path, summary)
    assert (tmp_path / output.MARKER).is_file() and output.is_output(tmp_path)
    back = output.read(tmp_path)
    assert isinstance(back, output.NativeOutput) and back == written
    assert back.to_summary() == summary
    assert back.image_path() == tmp_path / "image"
    with pytest.raises(dataclasses.FrozenInstanceError):
        back.name = "other"


def test_round_trip_wasm(tmp_path):
    summary = {"name": "app", "target": "wasm", "digest": "sha256:ef", "module": str(tmp_path / "app.wasm"),
               "preinitialized": True}
    output.write(tmp_path, summary)
    back = output.read(tmp_path)
    assert isinstance(back, output.WasmOutput)
    assert back.module == tmp_path / "app.wasm" and back.preinitialized and back.image_path() is None
    assert back.to_summary() == summary


def test_not_an_output(tmp_path):
    assert not output.is_output(tmp_path) and output.image_path_in(tmp_path) is None
    with pytest.raises(FileNotFoundError):
        output.read(tmp_path)


def test_build_and_deploy_share_the_workers_verdict(tmp_path):
    """forge build's summary (targets/wasm) and forge deploy workers compute the same gzip size."""
    from forge.deploy import workers
    from forge.targets import wasm

    data = os.urandom(1 << 16) + b"\0" * (1 << 20)
    assert wasm.workers_gzip_size is platform.workers_gzip_size is workers.workers_gzip_size
    assert (workers.FREE_LIMIT, workers.PAID_LIMIT) == (platform.WORKERS_LIMIT_FREE, platform.WORKERS_LIMIT_PAID)
    fit = wasm.workers_fit(platform.workers_gzip_size(data))
    assert fit["fits_free"] and fit["gzip_size"] == platform.workers_gzip_size(data)
