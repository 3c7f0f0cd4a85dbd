"""A requirement whose Requires-Python excludes the SDK's Python, read out of pip's log.

pip answers such a requirement with its whole version list ("Could not find a version that
satisfies the requirement ... (from versions: ...)"); forge turns that into one paragraph naming the
package, its Requires-Python, the SDK's version and the fix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from forge.sdk import sources

_IGNORED = re.compile(r"Ignored the following versions that require a different python version: (.+)")
_NO_MATCH = re.compile(r"Could not find a version that satisfies the requirement (.+?) \(from versions: ([^)]*)\)")
_PACKAGE = re.compile(r"Package '([^']+)' requires a different Python: (\S+) not in '([^']+)'")


@dataclass(frozen=True)
class PythonMismatch:
    requirement: str        # as pip printed it, e.g. "django==6.1.3"
    name: str
    requires_python: str    # the spec(s) of the versions that would have matched
    compatible: str | None  # the newest version of it that supports the SDK's Python, if known


def _ignored(text: str) -> dict[str, str]:
    """"6.0 Requires-Python >=3.12; 6.0.1 Requires-Python >=3.12" -> {version: spec}."""
    out = {}
    for part in text.split(";"):
        version, _, spec = part.strip().partition(" Requires-Python ")
        if version and spec:
            out[version.strip()] = spec.strip()
    return out


def _newest(versions: list[str]) -> str | None:
    parsed = []
    for v in versions:
        try:
            ver = Version(v)
        except InvalidVersion:
            continue
        if not ver.is_prerelease:
            parsed.append(ver)
    return str(max(parsed)) if parsed else None


def find_mismatch(log: str) -> PythonMismatch | None:
    """The first requirement pip refused because of Requires-Python, or None."""
    m = _PACKAGE.search(log)
    if m:
        return PythonMismatch(m.group(1), m.group(1), m.group(3), None)
    ignored: dict[str, str] = {}
    for line in log.splitlines():
        if (g := _IGNORED.search(line)):
            ignored = _ignored(g.group(1))
            continue
        if not (n := _NO_MATCH.search(line)):
            continue
        raw = n.group(1).strip()
        try:
            req = Requirement(raw)
        except InvalidRequirement:
            ignored = {}
            continue
        excluded = sorted({spec for v, spec in ignored.items() if _matches(req, v)})
        if excluded:
            available = [v.strip() for v in n.group(2).split(",") if v.strip() and v.strip() != "none"]
            return PythonMismatch(raw, req.name, " or ".join(excluded), _newest(available))
        ignored = {}
    return None


def _matches(req: Requirement, version: str) -> bool:
    try:
        return req.specifier.contains(version, prereleases=True)
    except InvalidVersion:
        return False


def explain(m: PythonMismatch, sdk_version: str, log_path) -> str:
    fits = []
    for minor, src in sources.CPYTHON.items():
        try:
            if any(SpecifierSet(s).contains(src.version) for s in m.requires_python.split(" or ")):
                fits.append(minor)
        except InvalidSpecifier:
            pass
    fix = [f"build with --python {fits[-1]} (or [tool.forge] python = \"{fits[-1]}\")"] if fits else []
    if m.compatible:
        fix.append(f"pin a version that supports Python {sdk_version}, e.g. {m.name}=={m.compatible}")
    else:
        fix.append(f"pin a version of {m.name} that supports Python {sdk_version}")
    return (f"{m.requirement} cannot be installed: it requires Python {m.requires_python} "
            f"(its Requires-Python), and the SDK is CPython {sdk_version}. Fix: "
            f"{'; or '.join(fix)}. pip's log: {log_path}")
