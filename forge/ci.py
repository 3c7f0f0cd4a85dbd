"""`forge ci github`: a GitHub Actions workflow that builds, pushes and deploys a forge project.

The workflow, on every push to the default branch (and by hand):
  1. installs the system packages forge needs (musl-tools, ...) and forge itself;
  2. restores forge's cache (the static CPython SDK, ~minutes to build) keyed by forge's version;
  3. `forge build`s the project;
  4. `forge push`es the image to `$IMAGE:<commit sha>` with the REGISTRY_USER / REGISTRY_PASSWORD
     secrets (skipped on the --dockerfile route, where wrangler builds the image);
  5. `forge deploy cloudflare` writes the Cloudflare project and `wrangler deploy` ships it with the
     CLOUDFLARE_API_TOKEN (and CLOUDFLARE_ACCOUNT_ID) secrets.

The file starts with a `forge-sha256:` line, the hash of the rest: a later `forge ci github` rewrites
it only while that hash still holds (the user has not edited it), unless --force.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from forge import __version__
from forge.cache import atomic_write_bytes
from forge.deploy.cloudflare import WRANGLER_VERSION
from forge.errors import DeployConfigError, OutputPathConflict, UserFileChanged

DEFAULT_PATH = Path(".github/workflows/forge.yml")
# The job's image: Debian, whose apt sources forge's source route derives its deb-src entries from.
CI_CONTAINER = "debian:trixie"
# What scripts/bootstrap.sh installs, plus what a bare Debian image lacks (Python, git, CA roots).
CI_PACKAGES = ("python3 python3-venv git ca-certificates curl musl-tools linux-libc-dev tcl make patch gcc "
               "binutils patchelf file openssl pkg-config autoconf automake libtool xz-utils bzip2")
_HASH_LINE = re.compile(r"^# forge-sha256: ([0-9a-f]{64})\n")


def _q(value: str) -> str:
    """A YAML double-quoted scalar (JSON strings are valid YAML)."""
    return json.dumps(value)


def render_workflow(*, project: str = ".", image: str | None = None, dockerfile: bool = False,
                    forge_spec: str | None = None, branch: str = "main") -> str:
    if image is not None:
        from forge.publish.reference import parse_reference

        ref = parse_reference(image, default_tag=None)
        if ref.tag or ref.digest:
            raise DeployConfigError(f"--image {image}: give the repository only (e.g. docker.io/you/app); the "
                                    "workflow tags each image with the commit SHA.")
        image_expr = str(ref)
    else:
        image_expr = "${{ vars.FORGE_IMAGE }}"
    # forge is not on PyPI under its name ("forge" there is an unrelated project): the requirement is
    # baked in with --forge-spec, or read from the FORGE_PIP_SPEC repository variable.
    spec = forge_spec or "${{ vars.FORGE_PIP_SPEC }}"
    deploy_dir = f"{project.rstrip('/')}/deploy/cloudflare" if project not in (".", "./") else "deploy/cloudflare"
    out = "dist/forge-app"
    lines = [
        "name: forge",
        "",
        "on:",
        "  push:",
        f"    branches: [{_q(branch)}]",
        "  workflow_dispatch:",
        "",
        "permissions:",
        "  contents: read",
        "",
        "concurrency:",
        "  group: forge-deploy-${{ github.ref }}",
        "  cancel-in-progress: false",
        "",
        "env:",
        f"  FORGE_PIP_SPEC: {_q(spec)}",
        f"  PROJECT: {_q(project)}",
    ]
    if not dockerfile:
        lines.append(f"  IMAGE: {_q(image_expr)}")
    lines += [
        "",
        "jobs:",
        "  deploy:",
        "    runs-on: ubuntu-24.04",
        # In Debian's own image, apt resolves against Debian's archive: forge's source route (the
        # pins are Debian .orig files, found through the machine's apt sources) works there, and
        # not against Ubuntu's archive on the bare runner (docs/deploy.md, "CI").
        f"    container: {_q(CI_CONTAINER)}",
        "    timeout-minutes: 60",
        "    steps:",
        "      - name: System packages forge needs",
        "        run: |",
        "          apt-get update -qq",
        f"          DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends {CI_PACKAGES}",
        "      - uses: actions/checkout@v4",
        "      - uses: actions/setup-node@v4",
        "        with:",
        "          node-version: \"24\"",
        "      - name: Install forge",
        "        run: |",
        "          if [ -z \"$FORGE_PIP_SPEC\" ]; then",
        "            echo \"::error::set the repository variable FORGE_PIP_SPEC to the pip requirement that installs "
        "forge (e.g. forge @ git+https://...), or regenerate with forge ci github --forge-spec\"",
        "            exit 1",
        "          fi",
        "          python3 -m venv /opt/forge",
        "          /opt/forge/bin/pip install -q \"$FORGE_PIP_SPEC\"",
        "          echo /opt/forge/bin >> \"$GITHUB_PATH\"",
        "      - name: Cache forge's SDK",
        "        uses: actions/cache@v4",
        "        with:",
        "          path: ~/.cache/forge",
        f"          key: forge-{__version__}-{CI_CONTAINER.replace(':', '-')}-${{{{ hashFiles('**/pyproject.toml') }}}}",
        f"          restore-keys: forge-{__version__}-{CI_CONTAINER.replace(':', '-')}-",
        "      - name: Build",
        f"        run: forge build \"$PROJECT\" --build-sdk -o {out}",
    ]
    if dockerfile:
        lines += [
            "      - name: Generate the Cloudflare project (Dockerfile route)",
            f"        run: forge deploy cloudflare --project \"$PROJECT\" --dockerfile --from {out} -o {deploy_dir}",
        ]
    else:
        lines += [
            "      - name: Push",
            "        env:",
            "          FORGE_REGISTRY_USER: ${{ secrets.REGISTRY_USER }}",
            "          FORGE_REGISTRY_PASSWORD: ${{ secrets.REGISTRY_PASSWORD }}",
            f"        run: forge push {out} \"$IMAGE:${{{{ github.sha }}}}\"",
            "      - name: Generate the Cloudflare project",
            "        env:",
            "          FORGE_REGISTRY_USER: ${{ secrets.REGISTRY_USER }}",
            "          FORGE_REGISTRY_PASSWORD: ${{ secrets.REGISTRY_PASSWORD }}",
            f"        run: forge deploy cloudflare --project \"$PROJECT\" --image \"$IMAGE:${{{{ github.sha }}}}\" "
            f"-o {deploy_dir}",
        ]
    lines += [
        "      - name: Deploy with wrangler",
        f"        working-directory: {deploy_dir}",
        "        env:",
        "          CLOUDFLARE_API_TOKEN: ${{ secrets.CLOUDFLARE_API_TOKEN }}",
        "          CLOUDFLARE_ACCOUNT_ID: ${{ secrets.CLOUDFLARE_ACCOUNT_ID }}",
        "        run: |",
        "          npm install --no-audit --no-fund",
        f"          npx wrangler@{WRANGLER_VERSION} deploy",
    ]
    body = "\n".join(lines) + "\n"
    header = (f"# Generated by forge {__version__} (`forge ci github`). forge rewrites this file only while the\n"
              "# hash above matches its contents; once you edit it, it is yours (--force overwrites).\n"
              f"# Secrets: {secrets_needed(dockerfile)}.\n"
              + ("" if dockerfile or image else "# Variable: FORGE_IMAGE, the repository to push to "
                 "(e.g. docker.io/you/app).\n")
              + ("" if forge_spec else "# Variable: FORGE_PIP_SPEC, the pip requirement that installs forge.\n")
              + "\n")
    content = header + body
    return f"# forge-sha256: {hashlib.sha256(content.encode()).hexdigest()}\n" + content


def secrets_needed(dockerfile: bool) -> str:
    names = ([] if dockerfile else ["REGISTRY_USER", "REGISTRY_PASSWORD"]) + ["CLOUDFLARE_API_TOKEN",
                                                                             "CLOUDFLARE_ACCOUNT_ID"]
    return ", ".join(names)


def user_changed(text: str) -> bool:
    m = _HASH_LINE.match(text)
    if not m:
        return True
    return hashlib.sha256(text[m.end():].encode()).hexdigest() != m.group(1)


def write_workflow(path: Path, content: str, *, force: bool = False) -> bool:
    """Write the workflow; False when it was already exactly this. Refuses to replace a file the user
    changed (or one forge did not write) unless force."""
    path = Path(path)
    if path.exists() and not path.is_file():
        raise OutputPathConflict(f"{path} exists and is not a file; pass another -o.")
    if path.is_file():
        current = path.read_text(errors="replace")
        if current == content:
            return False
        if user_changed(current) and not force:
            raise UserFileChanged(f"{path} was changed since forge wrote it (or forge did not write it); forge keeps "
                                  "your edits. Move it aside, pass another -o, or run `forge ci github --force` to "
                                  "overwrite it.")
    atomic_write_bytes(path, content.encode())
    return True
