"""`forge build` end to end on the bundled example: static binary, reproducible OCI image, a
container that answers HTTP as non-root on a read-only rootfs, TLS through the CA bundle, SBOM."""

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from forge.elfcheck import static_problems
from forge.image.read import load_image
from tests.helpers import free_port, run_forge, wait_http

pytestmark = pytest.mark.sdk
ROOT = Path(__file__).resolve().parent.parent
HELLO = ROOT / "examples" / "hello"


def _build(*args, cwd=None, timeout=1800) -> dict:
    r = run_forge("build", *map(str, args), "--json", cwd=cwd, timeout=timeout)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    return json.loads(r.stdout)


@pytest.fixture(scope="module")
def hello(sdk, tmp_path_factory):
    out = tmp_path_factory.mktemp("hello") / "out"
    return _build(HELLO, "-o", out, "--no-cache")


def test_hello_binary_is_static_and_stripped(hello):
    binary = Path(hello["binary"])
    assert static_problems(binary) == []
    assert hello["binary_size"] == binary.stat().st_size > 1_000_000
    out = subprocess.run(["file", str(binary)], capture_output=True, text=True).stdout
    assert "statically linked" in out and "not stripped" not in out


def test_summary_has_the_promised_keys(hello):
    for key in ("digest", "binary", "binary_size", "image_size_compressed", "image_size_uncompressed",
                "layers", "build_seconds"):
        assert key in hello
    assert hello["image_size_compressed"] < hello["image_size_uncompressed"]
    assert len(hello["layers"]) >= 2


def test_oci_layout_verifies(hello):
    layout = Path(hello["image"])
    assert json.loads((layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((layout / "index.json").read_text())
    assert index["schemaVersion"] == 2 and index["manifests"][0]["digest"] == hello["digest"]
    image = load_image(layout)  # re-hashes every blob against its descriptor
    assert image.digest == hello["digest"]
    for blob in layout.glob("blobs/sha256/*"):
        import hashlib
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name
    config = json.loads(image.config.data)
    assert config["architecture"] == "amd64" and config["os"] == "linux"
    assert config["config"]["User"] == "65532:65532"
    assert "8080/tcp" in config["config"]["ExposedPorts"]
    assert any(e.startswith("SSL_CERT_FILE=") for e in config["config"]["Env"])
    assert config["config"]["Labels"]["org.opencontainers.image.title"] == "hello"


def test_two_clean_builds_give_the_same_digest(hello, tmp_path):
    again = _build(HELLO, "-o", tmp_path / "again", "--no-cache")
    assert again["cached_compile"] is False
    assert again["digest"] == hello["digest"]
    assert Path(again["binary"]).read_bytes() == Path(hello["binary"]).read_bytes()


def test_unchanged_workload_is_not_recompiled(hello, tmp_path):
    again = _build(HELLO, "-o", tmp_path / "cached")
    assert again["cached_compile"] is True and again["digest"] == hello["digest"]


def test_zstd_layers(hello, tmp_path):
    z = _build(HELLO, "-o", tmp_path / "z", "--compression", "zstd")
    assert {layer["media_type"] for layer in z["layers"]} == {"application/vnd.oci.image.layer.v1.tar+zstd"}
    assert load_image(Path(z["image"])).digest == z["digest"] != hello["digest"]


def test_sbom_lists_sdk_sources_and_versions(hello):
    sbom = json.loads(Path(hello["sbom"]).read_text())
    assert sbom["spdxVersion"] == "SPDX-2.3"
    pkgs = {p["name"]: p for p in sbom["packages"]}
    for name in ("cpython", "openssl", "sqlite", "zlib", "bzip2", "xz", "libffi", "util-linux", "mimalloc", "Nuitka"):
        assert name in pkgs, name
        assert pkgs[name]["versionInfo"]
    assert pkgs["openssl"]["licenseDeclared"] == "Apache-2.0"
    assert pkgs["mimalloc"]["licenseDeclared"] == "MIT"
    assert pkgs["hello"]["versionInfo"] == hello["digest"]


def _free_port() -> int:
    return free_port()


def _wait_http(url: str, timeout: float = 20.0) -> requests.Response:
    return wait_http(url, timeout)


@pytest.mark.docker
def test_image_loads_and_answers_as_nonroot_readonly(hello, docker_client, tmp_path):
    tag = "forge-test/hello:build"
    archive = _build(HELLO, "-o", tmp_path / "arch", "--format", "docker-archive", "--tag", tag)
    with open(archive["image"], "rb") as fh:
        docker_client.images.load(fh.read())
    port = _free_port()
    c = docker_client.containers.run(tag, detach=True, read_only=True, user="65532",
                                     ports={"8080/tcp": ("127.0.0.1", port)})
    try:
        r = _wait_http(f"http://127.0.0.1:{port}/")
        assert r.status_code == 200 and r.text == "hello from forge"
        assert _wait_http(f"http://127.0.0.1:{port}/healthz").json()["ok"] is True
        echo = requests.post(f"http://127.0.0.1:{port}/echo", data=b'{"a": [1, "\\u00e9"]}', timeout=5)
        assert echo.status_code == 200 and echo.json() == {"echo": {"a": [1, "\u00e9"]}, "bytes": 20}
        bad = requests.post(f"http://127.0.0.1:{port}/echo", data=b"{nope", timeout=5)
        assert bad.status_code == 400 and bad.json()["error"].startswith("invalid JSON")
        c.stop(timeout=10)
        assert c.wait(timeout=20)["StatusCode"] == 0  # SIGTERM drains and exits 0
    finally:
        c.remove(force=True)


@pytest.mark.docker
def test_load_flag_puts_the_image_into_docker(hello, docker_client, tmp_path):
    tag = "forge-test/hello:loaded"
    _build(HELLO, "-o", tmp_path / "load", "--load", "--tag", tag)
    img = docker_client.images.get(tag)
    assert img.attrs["Config"]["User"] == "65532:65532"
    assert img.attrs["Architecture"] == "amd64"


TLS_CLIENT = '''
import socket, ssl, sys
ctx = ssl.create_default_context()
host, port = sys.argv[1], int(sys.argv[2])
try:
    with socket.create_connection((host, port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="forge-test.local") as tls:
            tls.sendall(b"hi")
            print("verified", tls.recv(16).decode())
except ssl.SSLCertVerificationError as exc:
    print("rejected", exc.verify_message)
    sys.exit(3)
'''


@pytest.mark.docker
def test_https_client_in_container_verifies_through_ca_bundle(sdk, docker_client, tmp_path):
    import ssl
    import threading

    # A test CA and a server certificate for forge-test.local, made with the openssl CLI.
    def openssl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=tmp_path)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "2", "-subj", "/CN=forge test CA",
            # A CA as real ones are: CPython 3.13 verifies strictly (VERIFY_X509_STRICT) and
            # refuses a CA certificate without keyUsage.
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "srv.key", "-out", "srv.csr",
            "-subj", "/CN=forge-test.local")
    (tmp_path / "ext.cnf").write_text("subjectAltName=DNS:forge-test.local\nauthorityKeyIdentifier=keyid,issuer\n"
                                      "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
                                      "extendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "srv.pem", "-days", "2", "-extfile", "ext.cnf")

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "srv.pem", tmp_path / "srv.key")
    server = socket.create_server(("0.0.0.0", 0))
    port = server.getsockname()[1]
    stop = threading.Event()

    def serve():
        server.settimeout(0.5)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            try:
                with ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(16)
                    tls.sendall(b"ok")
            except (ssl.SSLError, OSError):
                pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()

    proj = tmp_path / "tlsclient"
    proj.mkdir()
    (proj / "client.py").write_text(TLS_CLIENT)
    tag = "forge-test/tlsclient:build"
    _build(proj / "client.py", "-o", tmp_path / "out", "--load", "--tag", tag)
    run = dict(network_mode="host", read_only=True, user="65532",
               extra_hosts=None, remove=False, detach=True)
    try:
        # The image's own bundle (certifi) does not know the test CA: verification must fail...
        c = docker_client.containers.run(tag, ["127.0.0.1", str(port)], **run)
        assert c.wait(timeout=30)["StatusCode"] == 3, c.logs().decode()
        assert b"rejected" in c.logs()
        c.remove()
        # ...and succeeds when the CA bundle mechanism (SSL_CERT_FILE) points at a bundle with it.
        c = docker_client.containers.run(
            tag, ["127.0.0.1", str(port)], environment={"SSL_CERT_FILE": "/ca/ca.pem"},
            volumes={str(tmp_path / "ca.pem"): {"bind": "/ca/ca.pem", "mode": "ro"}}, **run)
        assert c.wait(timeout=30)["StatusCode"] == 0, c.logs().decode()
        assert c.logs().decode().strip() == "verified ok"
        c.remove()
    finally:
        stop.set()
        server.close()


def _serve_binary(binary: Path):
    port = _free_port()
    proc = subprocess.Popen([str(binary)], env={"PORT": str(port), "FORGE_ACCESS_LOG": "0"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return proc, f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("example, expected, dist", [
    ("wsgi", "hello from forge (bottle)", "bottle"),
    ("asgi", "hello from forge (starlette)", "starlette"),
])
def test_framework_examples_compile_their_pure_python_dependencies(sdk, tmp_path, example, expected, dist):
    summary = _build(ROOT / "examples" / example, "-o", tmp_path / example)
    assert static_problems(Path(summary["binary"])) == []
    assert any(d.lower().startswith(dist + "==") for d in summary["dependencies"]), summary["dependencies"]
    sbom = json.loads(Path(summary["sbom"]).read_text())
    assert dist in {p["name"].lower() for p in sbom["packages"]}
    proc, url = _serve_binary(Path(summary["binary"]))
    try:
        r = _wait_http(url + "/")
        assert r.status_code == 200 and r.text == expected
        echo = requests.post(url + "/echo", json={"n": 1}, timeout=5)
        assert echo.status_code == 200 and echo.json()["echo"] == {"n": 1}
    finally:
        proc.terminate()
        assert proc.wait(timeout=20) == 0


LAZY_INSPECT = '''
import sys
print("inspect at start", "inspect" in sys.modules)
import asyncio, types
def g():
    yield 1
async def c():
    await asyncio.sleep(0)
    return 5
@types.coroutine
def legacy():
    yield
async def uses_legacy():
    await legacy()
    return "legacy-ok"
print("run", asyncio.run(c()), asyncio.run(uses_legacy()))
import inspect  # imported late: forge's SDK patches it for compiled code on import
gen = g()
print("state", inspect.getgeneratorstate(gen))
next(gen)
print("state", inspect.getgeneratorstate(gen))
co = c()
print("costate", inspect.getcoroutinestate(co))
co.close()
print("kinds", inspect.isgeneratorfunction(g), inspect.iscoroutinefunction(c), str(inspect.signature(c)))
'''


def test_inspect_is_not_imported_at_start_but_patched_when_imported(sdk, tmp_path):
    prog = tmp_path / "lazy.py"
    prog.write_text(LAZY_INSPECT)
    summary = _build(prog, "-o", tmp_path / "out")
    expected = subprocess.run([sys.executable, "-S", str(prog)], capture_output=True, text=True, check=True).stdout
    got = subprocess.run([summary["binary"]], capture_output=True, text=True, env={})
    assert got.returncode == 0, got.stderr
    assert got.stdout == expected
    assert got.stdout.startswith("inspect at start False")


ALLOCATING = """
blobs = [bytes(n) for n in (10, 1000, 100_000, 10_000_000)]
grown = bytearray()
for i in range(20000):
    grown += b"x" * 97
table = {i: str(i) * (i % 50) for i in range(50000)}
print(sum(map(len, blobs)), len(grown), sum(map(len, table.values())))
"""


def test_mimalloc_is_the_default_allocator_and_musl_can_be_chosen(sdk, tmp_path):
    """The default link takes mimalloc's malloc (it answers MIMALLOC_VERBOSE); allocator = "musl"
    keeps musl's. Both give the interpreter's answer."""
    expected = subprocess.run([sys.executable, "-c", ALLOCATING], capture_output=True, text=True,
                              check=True).stdout
    runs = {}
    for allocator in ("mimalloc", "musl"):
        project = tmp_path / allocator
        project.mkdir()
        (project / "prog.py").write_text(ALLOCATING)
        extra = "" if allocator == "mimalloc" else 'allocator = "musl"\n'
        (project / "pyproject.toml").write_text(f'[tool.forge]\nentry = "prog"\n{extra}')
        summary = _build(project, "-o", tmp_path / f"out-{allocator}")
        runs[allocator] = subprocess.run([summary["binary"]], capture_output=True, text=True,
                                         env={"MIMALLOC_VERBOSE": "1"})
    for allocator, got in runs.items():
        assert got.returncode == 0, (allocator, got.stderr[-2000:])
        assert got.stdout == expected, allocator
    assert "mimalloc: " in runs["mimalloc"].stderr
    assert "mimalloc" not in runs["musl"].stderr
