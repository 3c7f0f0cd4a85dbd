"""Import analysis before compiling: dynamic imports detected, optional imports tolerated."""

import pytest

from forge import errors
from forge.analysis import analyse, collect_imports

pytestmark = pytest.mark.sdk


def test_dynamic_and_stdlib_dynamic_imports_are_included(sdk, tmp_path):
    app = tmp_path / "app.py"
    app.write_text(
        "import importlib, xml.sax, asyncio\n"
        "def app(request):\n"
        "    mod = importlib.import_module('colorsys')\n"
        "    return request.body.decode('shift_jis') + 'x'.encode('cp1252').decode()\n")
    include = analyse([app], sdk.python, [tmp_path])
    for mod in ("colorsys", "xml.sax.expatreader", "concurrent.futures.thread",
                "encodings.shift_jis", "encodings.cp1252", "encodings.idna"):
        assert mod in include, mod


def test_guarded_and_type_checking_imports_are_optional(tmp_path):
    app = tmp_path / "app.py"
    app.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import not_installed_types\n"
        "try:\n    import orjson\nexcept ImportError:\n    orjson = None\n"
        "import json\n")
    sites = {s.module: s.optional for s in collect_imports(app)}
    assert "not_installed_types" not in sites
    assert sites["orjson"] is True and sites["json"] is False


def test_project_local_modules_resolve_and_missing_ones_fail(sdk, tmp_path):
    (tmp_path / "helpers.py").write_text("X = 1\n")
    app = tmp_path / "app.py"
    app.write_text("import helpers\nfrom helpers import X\n")
    analyse([app], sdk.python, [tmp_path])
    app.write_text("import helpers\nimport nope_missing_mod\n")
    with pytest.raises(errors.UnresolvedImport) as exc:
        analyse([app], sdk.python, [tmp_path])
    assert f"{app}:2" in exc.value.message
