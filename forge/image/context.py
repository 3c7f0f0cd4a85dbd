"""The Dockerfile.scratch route: a `docker build` context that gives the image build_image() writes.

    DIR/Dockerfile        Dockerfile.scratch from the top of the repository, with the spec's user,
                          port, entrypoint, extra env and labels written in (for the default spec it
                          is the file unchanged)
    DIR/rootfs/           the base rootfs (and zoneinfo), modes applied; /home/nonroot left out
    DIR/nonroot-home/     empty: COPY --chown=65532:65532 makes /home/nonroot from it
    DIR/app/              spec.app_dir, modes normalised as in the app layer

For when a team's pipeline must go through `docker build` (a policy, a build farm, a scanner hooked
into it). forge's own writer stays the reference: reproducible, one shared base layer.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from forge import errors
from forge.image.build import ImageSpec, app_entries
from forge.image.rootfs import CA_BUNDLE, NONROOT_HOME, images_dir, write_entries, write_rootfs
from forge.fsio import atomic_dir

DOCKERFILE_MARKER = "# forge: "


def dockerfile_scratch() -> Path:
    """Dockerfile.scratch at the top of the checkout (images/Dockerfile.scratch links to it, and is
    what an installed forge ships)."""
    return images_dir() / "Dockerfile.scratch"


def _quote(value: str) -> str:
    """A Dockerfile ENV/LABEL value: double-quoted, backslashes and quotes escaped, $ not expanded."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$").replace("\n", "\\n") + '"'


def render_dockerfile(spec: ImageSpec) -> str:
    """Dockerfile.scratch with the spec written in; the default spec gives the file unchanged."""
    text = dockerfile_scratch().read_text()
    extra_env = [f"ENV {k}={_quote(v)}" for k, v in sorted(spec.env.items()) if k != "PORT"]
    labels = [f"LABEL {_quote(k)}={_quote(v)}" for k, v in sorted(spec.labels.items())]
    out = []
    for line in text.splitlines():
        if line.startswith("USER "):
            line = f"USER {spec.user}"
        elif line.startswith("ENV SSL_CERT_FILE="):
            line = f"ENV SSL_CERT_FILE={CA_BUNDLE} PORT={spec.port}"
            out.append(line)
            out.extend(extra_env)
            continue
        elif re.match(r"^EXPOSE \d+$", line):
            line = f"EXPOSE {spec.port}"
        elif line.startswith("ENTRYPOINT "):
            out.extend(labels)
            line = "ENTRYPOINT " + json.dumps(list(spec.entrypoint))
        out.append(line)
    return "\n".join(out) + "\n"


def _is_forge_context(path: Path) -> bool:
    df = path / "Dockerfile"
    try:
        return df.is_file() and df.read_text(errors="replace").startswith(DOCKERFILE_MARKER)
    except OSError:
        return False


def write_build_context(spec: ImageSpec, dir: Path | str) -> Path:
    """Lay out a docker build context for `spec` in `dir` (created; a previous forge context there is
    replaced atomically, anything else raises errors.OutputPathConflict). Returns `dir`."""
    dest = Path(dir)
    _check_context_dir(dest)
    app = app_entries(spec.app_dir, spec.entrypoint)
    dockerfile = render_dockerfile(spec)
    with atomic_dir(dest, check=_check_context_dir, mode=0o755) as tmp:
        write_rootfs(tmp / "rootfs", spec.include_zoneinfo, skip=(NONROOT_HOME.lstrip("/"),))
        (tmp / "nonroot-home").mkdir(mode=0o755)
        write_entries(tmp, app)  # entries are under app/
        (tmp / "Dockerfile").write_text(dockerfile)
    return dest


def _check_context_dir(dest: Path) -> None:
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        raise errors.OutputPathConflict(f"{dest} exists and is not a directory; remove it or choose another build context path.")
    if dest.is_dir() and any(dest.iterdir()) and not _is_forge_context(dest):
        raise errors.OutputPathConflict(
            f"{dest} is a non-empty directory that is not a forge build context (its Dockerfile does not "
            f"start with {DOCKERFILE_MARKER.strip()!r}), so forge will not replace it. Remove or empty it, or "
            "choose another path.")
