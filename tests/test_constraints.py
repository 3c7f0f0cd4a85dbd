"""constraints.txt is the tested dependency set (scripts/lock.sh makes it, scripts/bootstrap.sh and so
CI install with it): it must satisfy every requirement pyproject.toml states, extras included."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent


def _pins() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for n, line in enumerate((ROOT / "constraints.txt").read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)", line)
        assert m, f"constraints.txt:{n}: {line!r} is not an exact name==version pin"
        name = canonicalize_name(m[1])
        assert name not in pins, f"constraints.txt:{n}: {m[1]} is pinned twice"
        pins[name] = Version(m[2])
    return pins


def _requirements() -> list[tuple[str, Requirement]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    out = [("dependencies", Requirement(r)) for r in project["dependencies"]]
    for extra, reqs in project.get("optional-dependencies", {}).items():
        out += [(f"[{extra}]", Requirement(r)) for r in reqs]
    return out


def test_every_pyproject_requirement_is_pinned_and_satisfied():
    pins = _pins()
    problems = []
    for where, req in _requirements():
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        pin = pins.get(canonicalize_name(req.name))
        if pin is None:
            problems.append(f"{req} ({where}) has no pin in constraints.txt")
        elif not req.specifier.contains(pin, prereleases=True):
            problems.append(f"{req} ({where}) is not satisfied by the pin {req.name}=={pin}")
    assert not problems, "pyproject.toml and constraints.txt disagree; run scripts/lock.sh:\n  " + "\n  ".join(problems)


def test_libraries_that_change_internals_have_upper_bounds():
    reqs = {canonicalize_name(r.name): r for _, r in _requirements()}
    for name in ("typer", "rich"):
        assert any(s.operator in ("<", "<=", "==", "~=") for s in reqs[name].specifier), f"{reqs[name]} has no upper bound"


def test_bootstrap_installs_with_the_constraints():
    script = (ROOT / "scripts" / "bootstrap.sh").read_text()
    assert re.search(r"pip install [^\n]*-c \"\$here/constraints\.txt\"", script)
    assert "bootstrap.sh --test" in (ROOT / "scripts" / "test.sh").read_text()
