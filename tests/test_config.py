"""forge.config: an unknown key is an error (exit 17) with a suggestion; a wrong type is a clear error."""

import subprocess
import sys
import textwrap

import pytest

from forge import errors
from forge.deploy.cloudflare import load_settings
from forge.workload import resolve


def project(tmp_path, tool: str):
    (tmp_path / "app.py").write_text("def app(environ, start_response):\n    return [b'']\n")
    (tmp_path / "pyproject.toml").write_text(textwrap.dedent(f"""\
        [project]
        name = "demo"
        version = "1"
        {tool}
        """))
    return tmp_path


def test_unknown_forge_key_suggests_and_exits_17(tmp_path):
    p = project(tmp_path, '[tool.forge]\nentyr = "app:app"\n')
    with pytest.raises(errors.ConfigError, match="did you mean 'entry'") as e:
        resolve(p)
    assert e.value.exit_code == 17
    r = subprocess.run([sys.executable, "-m", "forge", "build", str(p)], capture_output=True, text=True)
    assert r.returncode == 17, r.stderr
    assert "entyr" in r.stderr and "did you mean 'entry'" in " ".join(r.stderr.split())


def test_unknown_wasm_key_suggests(tmp_path):
    p = project(tmp_path, '[tool.forge.wasm]\npreinti = false\n')
    with pytest.raises(errors.ConfigError, match="did you mean 'preinit'") as e:
        resolve(p)
    assert e.value.exit_code == 17


def test_unknown_cloudflare_key_suggests(tmp_path):
    # reported with the other deployment problems (DeployConfigError) and the same key list
    p = project(tmp_path, '[tool.forge.cloudflare]\nmax_instanses = 2\n')
    with pytest.raises(errors.DeployConfigError, match="did you mean 'max_instances'"):
        load_settings(p)


def test_wrong_type_is_a_clear_error(tmp_path):
    p = project(tmp_path, '[tool.forge.wasm]\npreinit = "no"\n')
    from forge.targets.wasm import settings
    with pytest.raises(errors.ConfigError, match="preinit must be true or false"):
        settings(resolve(p))


def test_known_keys_pass(tmp_path):
    p = project(tmp_path, '[tool.forge]\nentry = "app:app"\nallocator = "musl"\n[tool.forge.wasm]\npreinit = false\n')
    assert resolve(p).attr == "app"


def test_source_date_epoch_rule(monkeypatch):
    from forge.config import source_date_epoch
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "12")
    assert source_date_epoch({"source_date_epoch": 5}) == 12
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    assert source_date_epoch({"source_date_epoch": 5}) == 5 and source_date_epoch({}) == 0
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "soon")
    with pytest.raises(errors.ConfigError):
        source_date_epoch({})
