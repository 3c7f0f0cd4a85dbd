"""The start check (forge/verify.py), the program's check mode and what goes in whole
(forge/inclusion.py), without the SDK: real processes, real sockets, no mocks.

The same checks on real builds (Django, entry points, a crash at import) are in test_build_whole.py.
"""

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from forge import errors, inclusion, verify
from forge.prepare import check_module_source, entry_source, program_source
from forge.workload import resolve

import forge_runtime  # noqa: E402  (installed with forge)

RUNTIME_PATH = str(Path(forge_runtime.__file__).resolve().parent.parent)


PROGRAMS = [
    '"""Doc."""\nfrom __future__ import annotations\nimport json\n\ndef main():\n    raise ValueError(1)\n',
    "# -*- coding: utf-8 -*-\n\n\n@staticmethod\ndef f():\n    return 1\nimport os\n",
    "import sys  # first\nprint('x')\n",
    "def f():\n    return 2\n",
    '"""Doc with é."""  # trailing\nx = 1\n',
    "",
]


@pytest.mark.parametrize("src", PROGRAMS)
def test_program_source_keeps_the_programs_line_numbers(src):
    out = program_source(src)
    assert "import _forge_boot" in out
    before = [(type(n).__name__, n.lineno) for n in ast.walk(ast.parse(src)) if hasattr(n, "lineno")]
    after = [(type(n).__name__, n.lineno) for n in ast.walk(ast.parse(out)) if hasattr(n, "lineno")
             and not (isinstance(n, (ast.Import, ast.alias)) and "_forge_boot" in ast.unparse(n))]
    if src.startswith("def f"):     # no blank line above a compound first statement: moved by one
        assert [ln for _, ln in after] == [ln + 1 for _, ln in before]
    else:
        assert after == before
    # the hook runs before anything else of the program
    first = [n for n in ast.parse(out).body
             if not (isinstance(n, ast.Expr) or (isinstance(n, ast.ImportFrom) and n.module == "__future__"))][0]
    assert ast.unparse(first) == "import _forge_boot"


def _check_dir(tmp_path: Path, program: str, **modules: str) -> Path:
    for name, text in modules.items():
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(text))
    (tmp_path / "_forge_boot.py").write_text(check_module_source(ast.parse(program)))
    (tmp_path / "prog.py").write_text(program_source(program))
    return tmp_path


def _run(d: Path, check: bool, stdin=None):
    env = {**os.environ, "PYTHONPATH": str(d)}
    env.pop(verify.CHECK_IMPORTS_ENV, None)
    if check:
        env[verify.CHECK_IMPORTS_ENV] = "1"
    return subprocess.run([sys.executable, str(d / "prog.py")], env=env, capture_output=True, text=True,
                          input=stdin, timeout=30)


def test_program_check_mode_imports_then_exits_without_reading_input(tmp_path):
    prog = "import sys\nimport helper\ntry:\n    import not_there_xyz\nexcept ImportError:\n    pass\n" \
           "data = sys.stdin.read()\nprint(helper.shout(data))\n"
    d = _check_dir(tmp_path, prog, helper="def shout(s):\n    return s.upper()\n")
    checked = _run(d, check=True)           # no input given: it must not block on stdin
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout == ""
    normal = _run(d, check=False, stdin="abc")
    assert normal.returncode == 0 and normal.stdout == "ABC\n"


def test_program_check_mode_fails_when_a_top_level_import_fails(tmp_path):
    d = _check_dir(tmp_path, "import broken\nprint('never')\n", broken="raise RuntimeError('no config')\n")
    checked = _run(d, check=True)
    assert checked.returncode == 1 and "RuntimeError: no config" in checked.stderr


def test_entry_source_probe_is_first_and_exits(tmp_path):
    w = resolve(_app(tmp_path, "def app(request):\n    return 'ok'\n"))
    src = entry_source(w)
    assert src.index(verify.PROBE_ENV) < src.index("import forge_runtime")
    # Nothing listening on the port: the probe says no (exit 1) without importing the workload.
    port = verify._free_port()
    (tmp_path / "forge_main.py").write_text(src)
    r = subprocess.run([sys.executable, str(tmp_path / "forge_main.py")], capture_output=True, text=True,
                       env={"PORT": str(port), verify.PROBE_ENV: "1"}, timeout=30)
    assert r.returncode == 1, r.stderr


def _app(tmp_path: Path, text: str) -> Path:
    app = tmp_path / "app.py"
    app.write_text(text)
    return app


def _fake_build(tmp_path: Path, body: str) -> Path:
    """An app dir whose `app` starts the host interpreter: what verify runs is a real process."""
    d = tmp_path / "bin"
    d.mkdir()
    (d / "data.txt").write_text("beside the binary")
    exe = d / "app"
    exe.write_text(f"#!/bin/sh\ncd \"$(dirname \"$0\")\"\nexport PYTHONPATH={RUNTIME_PATH}:.\n{body}\n")
    exe.chmod(0o755)
    return d


def test_direct_check_waits_for_the_ping_and_records_it(tmp_path):
    d = _fake_build(tmp_path, f"exec {sys.executable} -c \"import forge_runtime; "
                              f"assert open('data.txt').read(); forge_runtime.run(lambda r: 'ok')\"")
    record = tmp_path / "record"
    record.mkdir()
    os.environ["FORGE_VERIFY"] = "direct"
    try:
        got = verify.verify(app_dir=d, binary_name="app", served=True, name="t", record_dir=record)
        assert got.verified and got.method == "direct" and 0 < got.start_seconds < 30 and not got.cached
        again = verify.verify(app_dir=d, binary_name="app", served=True, name="t", record_dir=record)
        assert again.cached and again.start_seconds == pytest.approx(got.start_seconds)
    finally:
        del os.environ["FORGE_VERIFY"]


def test_direct_check_of_a_crash_names_the_module_and_the_fix(tmp_path):
    d = _fake_build(tmp_path, "echo 'Traceback (most recent call last):'\necho '  File \"app.py\", line 3'\n"
                              "echo \"ModuleNotFoundError: No module named 'django.middleware.common'\" >&2\n"
                              "exit 1")
    with pytest.raises(errors.StartupCheckFailed) as exc:
        verify.verify(app_dir=d, binary_name="app", served=True, name="t", log=tmp_path / "out.log")
    msg = exc.value.message
    assert exc.value.exit_code == 29
    assert "exited with status 1 before it answered" in msg
    assert "No module named 'django.middleware.common'" in msg
    assert 'include = ["django.middleware.common"]' in msg
    assert "No module named" in (tmp_path / "out.log").read_text()


def test_direct_check_of_a_program(tmp_path):
    ok = _fake_build(tmp_path, f'[ "$FORGE_CHECK_IMPORTS" = 1 ] && exit 0\nexec {sys.executable} -c "input()"')
    assert verify.verify(app_dir=ok, binary_name="app", served=False, name="p").verified
    (ok / "app").write_text("#!/bin/sh\necho 'ImportError: No module named _sqlite3' >&2\nexit 1\n")
    with pytest.raises(errors.StartupCheckFailed) as exc:
        verify.verify(app_dir=ok, binary_name="app", served=False, name="p", builtin_modules={"_sqlite3"})
    assert "import check" in exc.value.message and 'builtins = "all"' in exc.value.message


def test_direct_check_times_out(tmp_path, monkeypatch):
    monkeypatch.setenv("FORGE_VERIFY_TIMEOUT", "1")
    d = _fake_build(tmp_path, "sleep 30")
    with pytest.raises(errors.StartupCheckFailed) as exc:
        verify.verify(app_dir=d, binary_name="app", served=True, name="t")
    assert "did not answer GET http://ping/ within 1 s" in exc.value.message


def test_diagnose_points_at_exclude():
    fix = verify.diagnose("ModuleNotFoundError: No module named 'django.contrib.gis.db'",
                          excluded=("django.contrib.gis",))
    assert "exclude" in fix and "remove it" in fix


# --- forge/inclusion.py --------------------------------------------------------------------------------
def _site(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    for rel, text in {"pkg/__init__.py": "", "pkg/sub/__init__.py": "", "pkg/data/t.html": "<p>",
                      "single.py": "", "pkg-1.0.dist-info/METADATA": "Name: Pkg\nVersion: 1.0\n",
                      "pkg-1.0.dist-info/RECORD": "pkg/__init__.py,,\npkg/sub/__init__.py,,\n",
                      "single-2.0.dist-info/METADATA": "Name: single\nVersion: 2.0\n",
                      "single-2.0.dist-info/RECORD": "single.py,,\n",
                      "bin/tool": ""}.items():
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_text(text)
    return site


def test_inclusion_takes_dependencies_and_project_whole(tmp_path):
    proj = tmp_path / "proj"
    (proj / "mypkg").mkdir(parents=True)
    (proj / "mypkg" / "__init__.py").write_text("")
    (proj / "helpers.py").write_text("")
    (proj / "setup.py").write_text("")
    (proj / "pyproject.toml").write_text('[tool.forge]\nentry = "main:app"\ncompile = ["Pkg"]\n'
                                         'exclude = ["pkg.sub"]\n')
    (proj / "main.py").write_text("app = None\n")
    plan = inclusion.plan(resolve(proj), _site(tmp_path))
    # pkg was opted into C by its distribution name: Nuitka compiles it whole, with data and metadata
    assert plan.packages == ("pkg", "mypkg") and set(plan.modules) == {"helpers", "main"}
    assert plan.metadata == ("Pkg",)
    assert plan.bytecode == ("single",)              # the rest: .pyc in site-packages
    flags = plan.nuitka_flags()
    assert "--include-package-data=pkg" in flags and "--nofollow-import-to=single" in flags
    assert "--nofollow-import-to=pkg.sub" in flags and "--noinclude-data-files=pkg/sub" in flags
    (proj / "pyproject.toml").write_text('[tool.forge]\nentry = "main:app"\n')
    default = inclusion.plan(resolve(proj), _site(tmp_path / "again"))
    assert default.packages == ("mypkg",) and default.bytecode == ("pkg", "single")


def test_boot_source_finds_site_packages_and_extends_partial_packages(tmp_path):
    """The entry's first lines: site-packages beside it on sys.path, and submodules of a package
    loaded from elsewhere (as Nuitka carries part of a package) found in site-packages."""
    site = tmp_path / "site-packages"
    (site / "partial" / "extra").mkdir(parents=True)
    (site / "partial" / "extra" / "__init__.py").write_text("WHERE = 'site'\n")
    (site / "alone.py").write_text("X = 1\n")
    elsewhere = tmp_path / "elsewhere" / "partial"
    elsewhere.mkdir(parents=True)
    (elsewhere / "__init__.py").write_text("")
    (tmp_path / "main.py").write_text(inclusion.BOOT_SOURCE + textwrap.dedent('''
        sys = _sys
        sys.path.insert(0, %r)
        import alone, partial, partial.extra
        print(alone.X, partial.__file__.startswith(%r), partial.extra.WHERE)
    ''' % (str(tmp_path / "elsewhere"), str(elsewhere))))
    r = subprocess.run([sys.executable, "-I", str(tmp_path / "main.py")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "1 True site\n"


def test_inclusion_compile_must_name_a_dependency(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.forge]\nentry = "main"\ncompile = ["nope"]\n')
    (tmp_path / "main.py").write_text("print(1)\n")
    with pytest.raises(errors.ConfigError) as exc:
        inclusion.plan(resolve(tmp_path), _site(tmp_path / "deps"))
    assert "'nope'" in exc.value.message and "pkg, single" in exc.value.message


def test_inclusion_program_entry_is_not_also_a_module(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.forge]\nentry = "main"\nexclude = "x"\n')
    (tmp_path / "main.py").write_text("print(1)\n")
    with pytest.raises(errors.ConfigError):
        inclusion.plan(resolve(tmp_path), None)
    (tmp_path / "pyproject.toml").write_text('[tool.forge]\nentry = "main"\n')
    assert inclusion.plan(resolve(tmp_path), None).modules == ()
