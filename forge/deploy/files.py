"""Write generated files without ever clobbering a user's edits.

Every generator run records what it wrote, with hashes, in `.forge-generated.json` in the output
directory. On the next run a file is overwritten only if it is still byte-for-byte what forge wrote
(or already what forge is about to write); a file the user changed, or one forge never wrote, is a
conflict, refused as a whole before anything is touched unless `force`. Files forge wrote before but no
longer generates are removed if unchanged, kept otherwise.

Writes go to a scratch directory first: a new output directory is renamed into place whole; an
existing one gets each file renamed in (atomic per file) and the manifest last.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from forge import __version__
from forge.cache import sha256_file
from forge.fsio import atomic_dir
from forge.errors import OutputPathConflict, UserFileChanged

MANIFEST = ".forge-generated.json"


@dataclass(frozen=True)
class GeneratedFile:
    data: bytes = b""
    mode: int = 0o644
    kind: str = "file"      # "file", "dir" or "symlink"
    target: str = ""        # a symlink's target

    @property
    def sha256(self) -> str:
        """What the manifest records: the content hash of a file; the kind (and target) otherwise."""
        if self.kind == "dir":
            return "dir"
        if self.kind == "symlink":
            return f"symlink:{self.target}"
        return hashlib.sha256(self.data).hexdigest()


def _fingerprint(path: Path) -> str | None:
    """The manifest's view of what is at `path` now (None: nothing)."""
    if path.is_symlink():
        return f"symlink:{os.readlink(path)}"
    if path.is_dir():
        return "dir"
    if path.is_file():
        return sha256_file(path)
    return "other" if path.exists() else None


@dataclass
class WriteReport:
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    overwritten_user_changes: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    kept_stale: list[str] = field(default_factory=list)


def read_manifest(out_dir: Path) -> dict[str, str]:
    path = out_dir / MANIFEST
    try:
        doc = json.loads(path.read_text())
        files = doc.get("files", {})
        return {str(k): str(v) for k, v in files.items()} if isinstance(files, dict) else {}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, AttributeError):
        return {}


def _check_paths(files: dict[str, GeneratedFile]) -> None:
    for rel in files:
        p = PurePosixPath(rel)
        if p.is_absolute() or ".." in p.parts or rel == MANIFEST:
            raise ValueError(f"generated path {rel!r} must be relative and inside the output directory")


def plan(out_dir: Path, files: dict[str, GeneratedFile]) -> tuple[list[str], list[str], list[str], list[str]]:
    """(to write, unchanged, conflicts, stale previously generated files)."""
    recorded = read_manifest(out_dir)
    to_write, unchanged, conflicts = [], [], []
    for rel, gen in sorted(files.items()):
        current = _fingerprint(out_dir / rel)
        if current is None:
            to_write.append(rel)
        elif current == gen.sha256:
            unchanged.append(rel)
        elif recorded.get(rel) == current and current != "dir" and gen.kind != "dir":
            to_write.append(rel)
        else:
            conflicts.append(rel)
    stale = sorted(rel for rel in recorded if rel not in files)
    return to_write, unchanged, conflicts, stale


def write_generated(out_dir: Path, files: dict[str, GeneratedFile], *, force: bool = False,
                    command: str = "forge") -> WriteReport:
    out_dir = Path(out_dir)
    _check_paths(files)
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputPathConflict(f"{out_dir} exists and is not a directory; pass another -o or move it.")
    to_write, unchanged, conflicts, stale = plan(out_dir, files)
    if conflicts and not force:
        listing = ", ".join(conflicts[:10]) + (" ..." if len(conflicts) > 10 else "")
        raise UserFileChanged(
            f"{len(conflicts)} file(s) in {out_dir} changed since forge wrote them, or were not written by forge: "
            f"{listing}. forge keeps your edits: move them aside, or run `{command} --force` to overwrite them "
            f"(forge's record of what it wrote is {out_dir / MANIFEST}).")
    report = WriteReport(unchanged=unchanged, overwritten_user_changes=conflicts if force else [])
    writes = to_write + (conflicts if force else [])
    manifest = json.dumps({"generator": f"forge {__version__}", "command": command,
                           "files": {rel: files[rel].sha256 for rel in sorted(files)}},
                          indent=2, sort_keys=True).encode() + b"\n"

    def fill(root: Path, names: list[str]) -> None:
        for rel in sorted(names):
            dest, gen = root / rel, files[rel]
            dest.parent.mkdir(parents=True, exist_ok=True)
            if gen.kind == "dir":
                dest.mkdir(exist_ok=True)
            elif gen.kind == "symlink":
                dest.symlink_to(gen.target)
                continue
            else:
                dest.write_bytes(gen.data)
            os.chmod(dest, gen.mode)

    if not out_dir.exists():
        with atomic_dir(out_dir, mode=0o755) as tmp:
            fill(tmp, sorted(files))
            (tmp / MANIFEST).write_bytes(manifest)
        report.written = sorted(files)
        return report

    tmp = Path(tempfile.mkdtemp(prefix=".forge-tmp-", dir=out_dir))
    try:
        dirs = sorted(rel for rel in writes if files[rel].kind == "dir")
        others = [rel for rel in writes if files[rel].kind != "dir"]
        for rel in dirs:                       # directories are made in place, parents first
            (out_dir / rel).mkdir(parents=True, exist_ok=True)
            os.chmod(out_dir / rel, files[rel].mode)
        fill(tmp, others)
        (tmp / MANIFEST).write_bytes(manifest)
        for rel in others:
            dest = out_dir / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp / rel, dest)
        recorded = read_manifest(out_dir)
        for rel in sorted(stale, key=lambda r: -len(PurePosixPath(r).parts)):   # deepest first
            path = out_dir / rel
            current = _fingerprint(path)
            if current == "dir" and recorded.get(rel) == "dir":
                if not any(path.iterdir()):
                    path.rmdir()
                    report.removed.append(rel)
            elif current is not None and current == recorded.get(rel):
                path.unlink()
                report.removed.append(rel)
            elif current is not None:
                report.kept_stale.append(rel)
        for rel in report.removed:             # parents emptied by the removals
            parent = (out_dir / rel).parent
            while parent != out_dir and parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()
                parent = parent.parent
        os.replace(tmp / MANIFEST, out_dir / MANIFEST)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report.written = sorted(writes)
    return report
