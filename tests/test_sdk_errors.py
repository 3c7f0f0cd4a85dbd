"""Bad input to `forge toolchain build`: a clear error, its own exit code, and no cache entry."""

from pathlib import Path

from forge.sdk.sources import LIBRARIES
from tests.helpers import run_forge


def _entries(cache: Path) -> list[Path]:
    sdk = cache / "sdk"
    return [p for p in sdk.iterdir() if not p.name.endswith(".lock")] if sdk.is_dir() else []


def test_unknown_python_version(tmp_path):
    r = run_forge("toolchain", "build", "--python", "3.99", env={"FORGE_CACHE_DIR": str(tmp_path)})
    assert r.returncode == 10, r.stderr
    assert "3.99" in r.stderr and "3.13" in r.stderr and "3.14" in r.stderr and "Traceback" not in r.stderr
    assert _entries(tmp_path) == []


def test_tampered_tarball_is_refused(tmp_path):
    first = LIBRARIES[0]
    (tmp_path / "sources").mkdir()
    (tmp_path / "sources" / first.filename).write_bytes(b"not the real tarball")
    r = run_forge("toolchain", "build", env={"FORGE_CACHE_DIR": str(tmp_path)})
    assert r.returncode == 11, r.stderr
    assert first.sha256 in r.stderr and first.filename in r.stderr and "Traceback" not in r.stderr
    assert _entries(tmp_path) == []


def test_missing_compiler(tmp_path):
    r = run_forge("toolchain", "build", env={"FORGE_CACHE_DIR": str(tmp_path),
                                             "FORGE_MUSL_GCC": "no-such-musl-gcc"})
    assert r.returncode == 13, r.stderr
    assert "musl-tools" in r.stderr and "Traceback" not in r.stderr
    assert _entries(tmp_path) == []


def test_info_without_sdk_says_how_to_build(tmp_path):
    r = run_forge("toolchain", "info", env={"FORGE_CACHE_DIR": str(tmp_path)})
    assert r.returncode == 15
    assert "forge toolchain build" in r.stderr


def test_clean_removes_sdks_and_optionally_sources(tmp_path):
    (tmp_path / "sdk" / "cpython-x").mkdir(parents=True)
    (tmp_path / "sources").mkdir()
    (tmp_path / "sources" / "keep.tar.gz").write_bytes(b"x")
    r = run_forge("toolchain", "clean", env={"FORGE_CACHE_DIR": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "sdk").exists() and (tmp_path / "sources" / "keep.tar.gz").exists()
    r = run_forge("toolchain", "clean", "--sources", env={"FORGE_CACHE_DIR": str(tmp_path)})
    assert r.returncode == 0 and not (tmp_path / "sources").exists()
