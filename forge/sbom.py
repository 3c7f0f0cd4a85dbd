"""An SPDX 2.3 JSON SBOM for an image: the SDK's C sources, CPython, Nuitka, and every Python
distribution compiled into the binary. Deterministic: same inputs, same bytes."""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid

from forge import __version__
from forge.deps import Distribution


# SPDX license ids Python distributions commonly declare; anything else is NOASSERTION (with the
# declared text kept in a comment), so the document stays valid SPDX.
SPDX_LICENSES = {
    "MIT", "MIT-0", "BSD-2-Clause", "BSD-3-Clause", "Apache-2.0", "ISC", "PSF-2.0", "Python-2.0",
    "MPL-2.0", "LGPL-2.1-only", "LGPL-2.1-or-later", "LGPL-3.0-only", "LGPL-3.0-or-later",
    "GPL-2.0-only", "GPL-2.0-or-later", "GPL-3.0-only", "GPL-3.0-or-later", "Unlicense", "0BSD",
    "Zlib", "CC0-1.0", "HPND", "AGPL-3.0-only", "AGPL-3.0-or-later", "EPL-2.0", "BSL-1.0",
}
_CLASSIFIER_TO_SPDX = {"MIT License": "MIT", "BSD License": "BSD-3-Clause", "Apache Software License": "Apache-2.0",
                       "ISC License (ISCL)": "ISC", "Python Software Foundation License": "PSF-2.0",
                       "Mozilla Public License 2.0 (MPL 2.0)": "MPL-2.0"}


def spdx_license(declared: str) -> str:
    """An SPDX expression for a declared license, or NOASSERTION."""
    text = _CLASSIFIER_TO_SPDX.get(declared.strip(), declared.strip())
    parts = [p for p in text.replace("(", " ").replace(")", " ").split() if p not in ("AND", "OR", "WITH")]
    return text if parts and all(p in SPDX_LICENSES for p in parts) else "NOASSERTION"


def _spdx_id(text: str) -> str:
    return "SPDXRef-" + re.sub(r"[^A-Za-z0-9.-]+", "-", text)


def build_sbom(name: str, image_digest: str, sdk_manifest: dict,
               distributions: tuple[Distribution, ...], epoch: int) -> bytes:
    packages = [{
        "SPDXID": "SPDXRef-image", "name": name, "versionInfo": image_digest,
        "downloadLocation": "NOASSERTION", "filesAnalyzed": False,
        "primaryPackagePurpose": "CONTAINER",
    }]
    for s in sdk_manifest["sources"]:
        packages.append({
            "SPDXID": _spdx_id(f"sdk-{s['name']}"), "name": s["name"], "versionInfo": s["version"],
            "downloadLocation": "NOASSERTION", "filesAnalyzed": False,
            "licenseConcluded": s["license"], "licenseDeclared": s["license"],
            "checksums": [{"algorithm": "SHA256", "checksumValue": s["sha256"]}],
            "primaryPackagePurpose": "SOURCE", "comment": f"SDK source tarball {s['file']}",
        })
    for wheel in sdk_manifest.get("packages", []):
        m = re.match(r"([A-Za-z0-9_.]+)-([0-9][^-]*)", wheel)
        if m and m.group(1).lower() == "nuitka":  # the compiler's runtime code is in the binary
            packages.append({
                "SPDXID": _spdx_id("pypi-nuitka"), "name": "Nuitka", "versionInfo": m.group(2),
                "downloadLocation": f"https://pypi.org/project/Nuitka/{m.group(2)}/",
                "filesAnalyzed": False, "licenseConcluded": "Apache-2.0",
                "licenseDeclared": "Apache-2.0", "primaryPackagePurpose": "LIBRARY",
                "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                                  "referenceLocator": f"pkg:pypi/nuitka@{m.group(2)}"}],
            })
    for d in distributions:
        lic = spdx_license(d.license)
        packages.append({
            "SPDXID": _spdx_id(f"pypi-{d.name}"), "name": d.name, "versionInfo": d.version,
            "downloadLocation": f"https://pypi.org/project/{d.name}/{d.version}/",
            "filesAnalyzed": False, "licenseConcluded": lic, "licenseDeclared": lic,
            "comment": f"license as declared in the distribution's metadata: {d.license}",
            "primaryPackagePurpose": "LIBRARY",
            "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                              "referenceLocator": f"pkg:pypi/{d.name.lower()}@{d.version}"}],
        })
        if getattr(d, "sdist_sha256", None):  # built from its sdist by forge (extension modules)
            packages[-1]["checksums"] = [{"algorithm": "SHA256", "checksumValue": d.sdist_sha256}]
            packages[-1]["comment"] += ("; built from its sdist by forge's musl toolchain (checksum: "
                                        "the sdist's); its extension modules are linked into the binary")
    doc = {
        "spdxVersion": "SPDX-2.3", "dataLicense": "CC0-1.0", "SPDXID": "SPDXRef-DOCUMENT",
        "name": f"{name}-{image_digest}",
        "documentNamespace": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, 'forge:' + image_digest)}",
        "creationInfo": {
            "created": dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "creators": [f"Tool: forge-{__version__}"],
        },
        "packages": packages,
        "relationships": [{"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES",
                           "relatedSpdxElement": "SPDXRef-image"}]
        + [{"spdxElementId": "SPDXRef-image", "relationshipType": "CONTAINS",
            "relatedSpdxElement": p["SPDXID"]} for p in packages[1:]],
    }
    return json.dumps(doc, indent=2, sort_keys=True).encode() + b"\n"
