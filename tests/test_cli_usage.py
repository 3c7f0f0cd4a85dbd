"""The CLI as a new user meets it, in a venv installed exactly the README's way (`scripts/bootstrap.sh`,
no test extras, so neither the standalone click package nor matplotlib): usage errors are click's
usual ones (usage line, one line of error, exit 2, no traceback) for every command; `--help` shows
flags as flags and choices as a|b; `forge bench` fails before measuring without its extra; an
unexpected error is one paragraph with a crash log and exit 70, its traceback only with FORGE_DEBUG=1.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from forge import errors

ROOT = Path(__file__).resolve().parent.parent
HELLO = ROOT / "examples" / "hello"


# --- the venv the README's main command makes -------------------------------------------------------
@pytest.fixture(scope="session")
def readme_venv(request) -> Path:
    """`FORGE_VENV=DIR bash scripts/bootstrap.sh` (the README's command 1, minus the build), cached in
    .pytest_cache under a key of everything that decides what it installs; pip's cache makes a rebuild
    take ~20 s. The install is editable, so the code under test is this work tree's."""
    key = hashlib.sha256(str(ROOT).encode())
    for name in ("constraints.txt", "pyproject.toml", "scripts/bootstrap.sh"):
        key.update((ROOT / name).read_bytes())
    venv = Path(request.config.cache.mkdir("readme-venv")) / key.hexdigest()[:16]
    if not (venv / ".complete").exists():
        shutil.rmtree(venv, ignore_errors=True)
        env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
        r = subprocess.run(["bash", str(ROOT / "scripts" / "bootstrap.sh")], env={**env, "FORGE_VENV": str(venv)},
                           capture_output=True, text=True, timeout=1800)
        assert r.returncode == 0, r.stdout + r.stderr
        (venv / ".complete").write_text("")
    return venv


def _run(python: Path | str, *args: str, env: dict | None = None, cwd=None, timeout: float = 60):
    """The venv's `forge` script (what the README runs), beside its python."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("FORGE_DEBUG", "VIRTUAL_ENV")}
    return subprocess.run([str(Path(python).parent / "forge"), *map(str, args)], capture_output=True, text=True,
                          env={**full_env, **(env or {})}, cwd=cwd, timeout=timeout)


def test_readme_venv_is_the_pinned_set_and_has_no_extras(readme_venv):
    py = readme_venv / "bin" / "python"
    assert (readme_venv / "bin" / "forge").exists()
    check = subprocess.run([py, "-m", "pip", "check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    freeze = subprocess.run([py, "-m", "pip", "freeze", "--exclude-editable"], capture_output=True, text=True,
                            check=True).stdout
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[_norm(name)] = version
    for line in freeze.splitlines():
        if "==" in line:
            name, _, version = line.partition("==")
            assert pins.get(_norm(name)) == version, f"{line} is not the constraints.txt pin {pins.get(_norm(name))}"
    found = subprocess.run([py, "-c", "import importlib.util as u; print([m for m in ('click', 'matplotlib', "
                                      "'pytest') if u.find_spec(m)])"], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "[]"   # what the user had: typer's own click, no extras


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# --- every command, every kind of usage error --------------------------------------------------------
def _command_paths() -> dict[tuple[str, ...], object]:
    import typer.main

    from forge.cli import app

    out = {}

    def walk(cmd, path):
        out[path] = cmd
        for name, sub in (getattr(cmd, "commands", None) or {}).items():
            walk(sub, (*path, name))

    walk(typer.main.get_command(app), ())
    return out


COMMANDS = _command_paths()
GROUPS = [p for p, c in COMMANDS.items() if getattr(c, "commands", None)]

# Per command: a missing argument (a required positional, else an option given without its value) and
# a bad value (a choice where it has one, else a typed option, else an unexpected extra argument).
# None: the command has no such thing (toolchain clean takes only flags; without arguments it runs).
CASES: dict[tuple[str, ...], dict[str, list[str] | None]] = {
    ("build",): {"no arguments": [], "missing argument": ["--format"], "bad choice": ["app.py", "--format", "tar"]},
    ("bench",): {"missing argument": ["--runs"], "bad choice": ["--variants", "forge,graal"]},
    ("push",): {"no arguments": [], "missing argument": ["dist/hello"], "bad choice": ["a", "b", "c"]},
    ("toolchain", "build"): {"missing argument": ["--python"], "bad choice": ["--jobs", "many"]},
    ("toolchain", "info"): {"missing argument": ["--python"], "bad choice": ["extra"]},
    ("toolchain", "path"): {"missing argument": ["--python"], "bad choice": ["extra"]},
    ("toolchain", "clean"): {"missing argument": None, "bad choice": ["extra"]},
    ("deploy", "cloudflare"): {"missing argument": ["--image"], "bad choice": ["extra"]},
    ("deploy", "workers"): {"missing argument": ["--from"], "bad choice": ["--target", "arm64"]},
    ("ci", "github"): {"missing argument": ["--branch"], "bad choice": ["extra"]},
}
# The choices each option lists in --help, and a value outside them is a usage error (exit 2).
CHOICES = {
    ("build",): {"--format": "oci|docker-archive", "--compression": "gzip|zstd", "--target": "native|wasm"},
    ("deploy", "workers"): {"--target": "native|wasm"},
}


def _usage_cases() -> list[tuple[str, list[str], str]]:
    cases = []
    for path in COMMANDS:
        name = " ".join(path) or "forge"
        cases.append((f"{name}: unknown option", [*path, "--bogus"], "error"))
        if path in GROUPS:
            cases.append((f"{name}: no arguments", list(path), "help"))
            cases.append((f"{name}: unknown command", [*path, "frobnicate"], "error"))
            continue
        for kind, args in CASES[path].items():
            if args is not None:
                cases.append((f"{name}: {kind}", [*path, *args], "error"))
    for path, options in CHOICES.items():
        for opt in options:
            extra = ["app.py"] if path == ("build",) else []
            cases.append((f"{' '.join(path)}: bad {opt}", [*path, *extra, opt, "bogus"], "error"))
    return cases


USAGE_CASES = _usage_cases()


def test_every_command_has_its_usage_cases():
    leaves = {p for p in COMMANDS if p not in GROUPS}
    assert leaves == set(CASES), "a new command needs its usage-error cases in CASES"


@pytest.fixture(scope="session")
def usage_results(readme_venv, tmp_path_factory):
    """Every case at once (threads: each is a ~0.3 s process); cwd is an empty directory."""
    cwd = tmp_path_factory.mktemp("usage-cwd")
    env = {"FORGE_CACHE_DIR": str(tmp_path_factory.mktemp("usage-cache"))}
    py = readme_venv / "bin" / "python"
    with ThreadPoolExecutor(8) as pool:
        futures = {name: pool.submit(_run, py, *args, env=env, cwd=cwd) for name, args, _ in USAGE_CASES}
        results = {name: f.result() for name, f in futures.items()}
    assert not any(cwd.iterdir()), "a usage error wrote something"
    return results


@pytest.mark.parametrize("name,args,kind", USAGE_CASES, ids=[c[0] for c in USAGE_CASES])
def test_usage_error(usage_results, name, args, kind):
    r = usage_results[name]
    both = r.stdout + r.stderr
    assert r.returncode == 2, both
    assert "Traceback" not in both
    assert re.search(r"^Usage: forge\b", r.stderr, re.M), both
    if kind == "error":
        lines = [line for line in r.stderr.splitlines() if line.strip()]
        assert lines[-1].startswith("Error: ") and len(lines) <= 3, r.stderr   # usage, try-help, error
        assert "internal error" not in both


def test_usage_errors_where_click_is_installed_too():
    """The test venv has the standalone click (a dependency of test tools) beside typer's own."""
    for args in (["build"], ["build", "--bogus"], ["build", "x", "--compression", "lz4"], ["push"]):
        r = _run(sys.executable, *args)
        assert r.returncode == 2 and "Traceback" not in r.stderr and r.stderr.startswith("Usage: forge"), r.stderr


# --- --help ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", list(COMMANDS), ids=[" ".join(p) or "forge" for p in COMMANDS])
def test_help(readme_venv, path):
    r = _run(readme_venv / "bin" / "python", *path, "--help")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stdout + r.stderr
    assert r.stdout.startswith(f"Usage: forge {' '.join(path)}".rstrip()), r.stdout
    assert "<bool>" not in r.stdout and "\\[" not in r.stdout
    text = re.sub(r"\s+", " ", r.stdout)
    for param in COMMANDS[path].params:
        if getattr(param, "param_type_name", "") != "option" or getattr(param, "hidden", False):
            continue
        long = max(param.opts, key=len)
        line = re.search(r"^ +(?:-\w+, )*" + re.escape(long) + r"(?P<rest>.*)$", r.stdout, re.M)
        assert line, f"{long} has no line of its own in the help"
        takes_value = re.match(r" (?!/)\S", line["rest"])   # `--tag <str>`, `--also-python 3.14,...`
        if getattr(param, "is_flag", False):   # a flag: its name (and --no-name), then its help
            assert not takes_value, f"{long} shown with a value: {line[0]}"
        else:
            assert takes_value, f"{long} shown without its value: {line[0]}"
    for opt, choices in CHOICES.get(path, {}).items():
        assert f"{opt} <{choices}>" in text, f"{opt} does not list {choices}"


# --- forge bench without its extra ---------------------------------------------------------------------
def test_bench_without_matplotlib_fails_before_measuring(readme_venv, tmp_path):
    out = tmp_path / "bench"
    start = time.monotonic()
    r = _run(readme_venv / "bin" / "python", "bench", HELLO, "--runs", "3", "-o", out,
             env={"FORGE_CACHE_DIR": str(tmp_path / "cache")})
    took = time.monotonic() - start
    assert r.returncode == errors.BenchDependencyMissing.exit_code, r.stdout + r.stderr
    assert "pip install 'forge[bench]'" in r.stderr and "matplotlib" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not out.exists() and not (tmp_path / "cache").exists()   # nothing built, nothing measured
    assert took < 10, took


# --- an unexpected error -------------------------------------------------------------------------------
CRASH = textwrap.dedent("""
    import sys
    import forge.ci, forge.cli

    def render_workflow(**kwargs):
        raise ZeroDivisionError("a bug planted by the test")

    forge.ci.render_workflow = render_workflow
    sys.argv = ["forge", "ci", "github", "-o", sys.argv[1]]
    forge.cli.main()
""")


def _crash(readme_venv, tmp_path, debug: bool):
    env = {k: v for k, v in os.environ.items() if k not in ("FORGE_DEBUG", "VIRTUAL_ENV")}
    env["FORGE_CACHE_DIR"] = str(tmp_path / "cache")
    if debug:
        env["FORGE_DEBUG"] = "1"
    return subprocess.run([str(readme_venv / "bin" / "python"), "-c", CRASH, str(tmp_path / "forge.yml")],
                          capture_output=True, text=True, env=env, timeout=60)


def test_internal_error_is_one_paragraph_with_a_log(readme_venv, tmp_path):
    r = _crash(readme_venv, tmp_path, debug=False)
    assert r.returncode == errors.InternalError.exit_code == 70, r.stderr
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: internal error: "), r.stderr
    assert "ZeroDivisionError: a bug planted by the test" in r.stderr and "report it" in r.stderr
    logs = list((tmp_path / "cache" / "logs" / "crash").glob("crash-*.log"))
    assert len(logs) == 1 and str(logs[0]) in r.stderr
    log = logs[0].read_text()
    assert "Traceback (most recent call last)" in log and "render_workflow" in log
    assert "command: forge ci github" in log
    assert not (tmp_path / "forge.yml").exists()


def test_internal_error_traceback_with_forge_debug(readme_venv, tmp_path):
    r = _crash(readme_venv, tmp_path, debug=True)
    assert r.returncode == 70, r.stderr
    assert "Traceback (most recent call last)" in r.stderr and "ZeroDivisionError" in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("error: internal error: ")


def test_forge_errors_keep_their_paragraph_and_code(readme_venv, tmp_path):
    r = _run(readme_venv / "bin" / "python", "build", tmp_path / "missing.py", "--json")
    assert r.returncode == errors.WorkloadNotFound.exit_code and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith("error: workload not found:")
