"""The SDK itself: static, every built-in module does real work, and Nuitka works inside it."""

import json
import subprocess
import textwrap

import certifi
import pytest

from forge.elfcheck import static_problems
from forge.sdk.layout import REQUIRED_BUILTINS
from forge.sdk.sources import DEFAULT_PYTHON, cpython_source
from tests.helpers import run_forge

pytestmark = pytest.mark.sdk


def test_interpreter_is_fully_static(each_sdk):
    assert static_problems(each_sdk.python.resolve()) == []


def test_required_modules_are_builtin(each_sdk):
    missing = set(REQUIRED_BUILTINS) - set(each_sdk.manifest["builtin_modules"])
    assert not missing
    live = subprocess.run([str(each_sdk.python), "-c", "import sys, json; print(json.dumps(sys.builtin_module_names))"],
                          capture_output=True, text=True, check=True)
    assert set(REQUIRED_BUILTINS) <= set(json.loads(live.stdout))


WORK = textwrap.dedent("""
    import sys, hashlib, ssl, sqlite3, zlib, ctypes, decimal, lzma, bz2, uuid, asyncio, socket
    import select, mmap, unicodedata, json, struct, binascii, math, datetime, random, bisect
    import heapq, array, csv, io, zoneinfo, xml.etree.ElementTree as ET, xml.parsers.expat
    import _multiprocessing, multiprocessing.connection
    out = {}
    out["sha256"] = hashlib.sha256(b"forge").hexdigest()
    out["hmac_openssl"] = hashlib.new("sha3_256", b"x").hexdigest()[:8]
    ctx = ssl.create_default_context(cafile=sys.argv[1])
    out["ssl_cas"] = ctx.cert_store_stats()["x509_ca"]
    db = sqlite3.connect(":memory:")
    db.execute("create table t (x)"); db.executemany("insert into t values (?)", [(1,), (2,), (39,)])
    out["sqlite"] = db.execute("select sum(x) from t").fetchone()[0]
    blob = b"edge " * 1000
    out["zlib"] = zlib.decompress(zlib.compress(blob)) == blob
    out["lzma"] = lzma.decompress(lzma.compress(blob)) == blob
    out["bz2"] = bz2.decompress(bz2.compress(blob)) == blob
    out["ctypes"] = ctypes.sizeof(ctypes.c_int64) + ctypes.sizeof(ctypes.c_char * 3)
    out["decimal"] = str(decimal.Decimal("1.10") + decimal.Decimal("2.20"))
    out["xml"] = ET.fromstring("<a><b n='1'/><b n='2'/></a>").findall("b")[1].get("n")
    out["uuid4_len"] = len(str(uuid.uuid4()))
    out["asyncio"] = asyncio.run(asyncio.sleep(0, result="ok"))
    a, b = socket.socketpair(); a.sendall(b"ping"); out["socket"] = b.recv(4).decode()
    out["select"] = bool(select.select([b], [], [], 0) is not None)
    m = mmap.mmap(-1, 16); m.write(b"mm"); out["mmap"] = m[:2].decode()
    out["unicodedata"] = unicodedata.name("\\u00e9")
    out["struct"] = struct.unpack("<I", struct.pack("<I", 513))[0]
    out["binascii"] = binascii.hexlify(b"\\x01\\xff").decode()
    out["math"] = math.isqrt(10**12)
    out["datetime"] = datetime.date(2026, 11, 22).isoformat()
    random.seed(1); out["random"] = random.randint(0, 10**6) >= 0
    out["bisect"] = bisect.bisect([1, 3, 5], 4)
    out["heapq"] = heapq.nsmallest(2, [5, 1, 4])
    out["array"] = array.array("i", [1, 2, 3]).tobytes().__len__()
    out["csv"] = next(csv.reader(io.StringIO("a,b,c")))
    out["zoneinfo"] = datetime.datetime(2026, 7, 1, tzinfo=zoneinfo.ZoneInfo("Europe/Paris")).utcoffset().seconds
    out["cjk"] = "日本語".encode("shift_jis").decode("shift_jis") + "한국".encode("euc_kr").decode("euc_kr")
    out["json"] = json.loads('{"k": [1, 2]}')["k"]
    print(json.dumps(out))
""")


def test_builtin_modules_do_real_work(each_sdk, tmp_path):
    script = tmp_path / "work.py"
    script.write_text(WORK)
    proc = subprocess.run([str(each_sdk.python), str(script), certifi.where()], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    import hashlib
    assert out["sha256"] == hashlib.sha256(b"forge").hexdigest()
    assert out["ssl_cas"] > 100
    assert out["sqlite"] == 42
    assert out["zlib"] and out["lzma"] and out["bz2"]
    assert out["ctypes"] == 11
    assert out["decimal"] == "3.30"
    assert out["xml"] == "2"
    assert out["uuid4_len"] == 36
    assert out["asyncio"] == "ok"
    assert out["socket"] == "ping" and out["mmap"] == "mm"
    assert out["unicodedata"] == "LATIN SMALL LETTER E WITH ACUTE"
    assert out["struct"] == 513 and out["binascii"] == "01ff" and out["math"] == 10**6
    assert out["datetime"] == "2026-11-22" and out["bisect"] == 2 and out["heapq"] == [1, 4]
    assert out["array"] == 12 and out["csv"] == ["a", "b", "c"]
    assert out["zoneinfo"] == 7200
    assert out["cjk"] == "日本語한국"
    assert out["json"] == [1, 2]


def test_nuitka_in_the_sdk_makes_one_static_binary(each_sdk, tmp_path):
    prog = tmp_path / "prog.py"
    prog.write_text("import sys, hashlib, sqlite3\n"
                    "print('forge says', hashlib.sha256(b'x').hexdigest()[:12], sqlite3.sqlite_version, sys.argv[1:])\n")
    env = {"CC": str(each_sdk.cc), "LDFLAGS": f"-static -L{each_sdk.deps_lib}", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([str(each_sdk.python), "-m", "nuitka", "--standalone", "--static-libpython=yes",
                           "--assume-yes-for-downloads", "--remove-output", f"--output-dir={tmp_path}", str(prog)],
                          capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    dist = tmp_path / "prog.dist"
    binary = dist / "prog.bin"
    assert static_problems(binary) == []
    run = subprocess.run([str(binary), "a", "b"], capture_output=True, text=True, env={})
    assert run.returncode == 0, run.stderr
    sqlite = {x["name"]: x["version"] for x in each_sdk.manifest["sources"]}["sqlite"]
    assert run.stdout.strip() == f"forge says 2d711642b726 {sqlite} ['a', 'b']"


def test_toolchain_info_json(sdk):
    r = run_forge("toolchain", "info", "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    for key in ("python_version", "path", "interpreter", "builtin_modules", "sources", "size_bytes", "cache_key"):
        assert key in info
    assert info["python_version"] == cpython_source(DEFAULT_PYTHON).version
    assert set(REQUIRED_BUILTINS) <= set(info["builtin_modules"])
    assert info["sources"]["openssl"].startswith("3.")
    r2 = run_forge("toolchain", "path")
    assert r2.stdout.strip() == info["path"]


def test_second_build_is_a_cache_hit(sdk):
    r = run_forge("toolchain", "build", timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(sdk.path)
    assert "already built" in r.stderr
