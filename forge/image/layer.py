"""Reproducible layer tarballs: entries in, the exact same compressed bytes out, every time.

Rules (docs/image.md has the why):
- entries sorted by path components, each parent directory emitted explicitly before its children;
- POSIX pax format (tarfile.PAX_FORMAT): plain ustar headers, a pax extended header only where ustar
  cannot hold a value (path over 100 bytes, non-ASCII name), never with times or atime/ctime;
- every mtime is the layer's epoch; uid/gid 0 unless an entry says otherwise; uname/gname empty;
- modes are given per entry by the caller (forge normalises them: 0755 dirs and executables, 0644
  files, 1777 /tmp), never read from the build machine's umask;
- gzip with a fixed header (mtime 0, no file name, XFL 2, OS byte 255 "unknown"), deflate level 9;
- zstd through the `zstandard` package, level ZSTD_LEVEL, single-threaded, content size and checksum
  written: the same bytes for the same zstd library on every machine.
"""

from __future__ import annotations

import hashlib
import io
import struct
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Literal

import zstandard

from forge import errors
from forge.image.model import OCI_LAYER_GZIP, OCI_LAYER_TAR, OCI_LAYER_ZSTD, Layer

Compression = Literal["gzip", "zstd"]
COMPRESSIONS: tuple[str, ...] = ("gzip", "zstd")
GZIP_LEVEL = 9
ZSTD_LEVEL = 19
MEDIA_TYPES = {"gzip": OCI_LAYER_GZIP, "zstd": OCI_LAYER_ZSTD}

# Docker (schema 2) names for the same things, accepted when reading images back.
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_ZSTD = "application/vnd.docker.image.rootfs.diff.tar.zstd"

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


@dataclass(frozen=True)
class Entry:
    """One tar member. `path` is relative and POSIX ("etc/passwd"), never with a leading slash."""

    path: str
    kind: Literal["dir", "file", "symlink", "hardlink"]
    mode: int
    data: bytes = b""
    linkname: str = ""     # symlink target, or for a hardlink the path of the member it links to
    uid: int = 0
    gid: int = 0

    @property
    def parts(self) -> tuple[str, ...]:
        return PurePosixPath(self.path).parts


def sort_entries(entries: list[Entry] | tuple[Entry, ...]) -> list[Entry]:
    """Sorted by path components (parents first) with every missing parent directory added (0755, root)."""
    by_path: dict[str, Entry] = {}
    for e in entries:
        p = PurePosixPath(e.path)
        if p.is_absolute() or ".." in p.parts or not p.parts or str(p) != e.path.rstrip("/"):
            raise ValueError(f"layer entry path must be relative and normalised: {e.path!r}")
        if e.path in by_path:
            raise ValueError(f"duplicate layer entry {e.path!r}")
        by_path[e.path] = e
    for e in list(by_path.values()):
        for parent in PurePosixPath(e.path).parents:
            key = str(parent)
            if key != "." and key not in by_path:
                by_path[key] = Entry(key, "dir", 0o755)
    for e in by_path.values():
        for parent in list(PurePosixPath(e.path).parents)[:-1]:
            if by_path[str(parent)].kind != "dir":
                raise ValueError(f"layer entry {e.path!r} is inside {str(parent)!r}, which is not a directory")
    return sorted(by_path.values(), key=lambda e: e.parts)


def tar_bytes(entries: list[Entry] | tuple[Entry, ...], mtime: int) -> bytes:
    """The uncompressed layer tar for `entries`, byte-for-byte determined by its arguments."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8") as tf:
        for e in sort_entries(entries):
            ti = tarfile.TarInfo(e.path)
            ti.mtime = int(mtime)
            ti.mode = e.mode
            ti.uid, ti.gid = e.uid, e.gid
            ti.uname = ti.gname = ""
            if e.kind == "dir":
                ti.type = tarfile.DIRTYPE
                tf.addfile(ti)
            elif e.kind == "file":
                ti.type = tarfile.REGTYPE
                ti.size = len(e.data)
                tf.addfile(ti, io.BytesIO(e.data))
            elif e.kind == "symlink":
                ti.type = tarfile.SYMTYPE
                ti.linkname = e.linkname
                tf.addfile(ti)
            elif e.kind == "hardlink":
                ti.type = tarfile.LNKTYPE
                ti.linkname = e.linkname
                tf.addfile(ti)
            else:  # pragma: no cover - Entry.kind is a Literal
                raise ValueError(f"unknown entry kind {e.kind!r}")
    return buf.getvalue()


def gzip_bytes(data: bytes, level: int = GZIP_LEVEL) -> bytes:
    """RFC 1952 gzip with a fixed header: no mtime, no file name, OS 255. Python's gzip module
    would do, but writing the 10 header bytes here pins every one of them."""
    co = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS, 9, zlib.Z_DEFAULT_STRATEGY)
    body = co.compress(data) + co.flush()
    xfl = 2 if level == 9 else (4 if level == 1 else 0)
    header = b"\x1f\x8b\x08\x00" + b"\x00\x00\x00\x00" + bytes([xfl, 255])
    trailer = struct.pack("<II", zlib.crc32(data) & 0xFFFFFFFF, len(data) & 0xFFFFFFFF)
    return header + body + trailer


def zstd_bytes(data: bytes, level: int = ZSTD_LEVEL) -> bytes:
    cctx = zstandard.ZstdCompressor(level=level, write_checksum=True, write_content_size=True, threads=0)
    return cctx.compress(data)


def compress(data: bytes, compression: str) -> bytes:
    if compression == "gzip":
        return gzip_bytes(data)
    if compression == "zstd":
        return zstd_bytes(data)
    raise errors.ConfigError(f"unknown layer compression {compression!r}: use one of {', '.join(COMPRESSIONS)}")


def iter_decompressed(data: bytes, chunk: int = 1 << 20) -> Iterator[bytes]:
    """The one layer decompressor: the uncompressed tar bytes of a layer blob, a chunk at a time
    (gzip, including concatenated members, zstd or plain tar, told apart by magic bytes)."""
    try:
        if data[:2] == GZIP_MAGIC:
            view, pos = memoryview(data), 0
            while pos < len(data):
                d = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)
                rest = view[pos:]
                for i in range(0, len(rest), chunk):
                    if d.eof:
                        break
                    yield d.decompress(rest[i:i + chunk])
                if not d.eof:
                    raise ValueError("truncated gzip stream")
                pos = len(data) - len(d.unused_data)  # concatenated gzip members
            return
        if data[:4] == ZSTD_MAGIC:
            reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True)
            while block := reader.read(chunk):
                yield block
            return
    except (zlib.error, zstandard.ZstdError, ValueError) as exc:
        raise errors.InvalidImage(f"a layer blob could not be decompressed: {exc}") from exc
    yield data


def decompress(data: bytes) -> bytes:
    """Uncompressed tar bytes of a layer blob (gzip, zstd or plain tar, told apart by magic bytes)."""
    return b"".join(iter_decompressed(data))


def uncompressed_length(media_type: str, data: bytes) -> int:
    """Bytes of the tar inside a layer blob, counted while streaming (`media_type` is kept for callers;
    the compression is told by magic bytes, as decompress does)."""
    return sum(len(block) for block in iter_decompressed(data))


def media_type_compression(media_type: str) -> str | None:
    """"gzip", "zstd" or None (uncompressed) for a layer media type."""
    if media_type in (OCI_LAYER_GZIP, DOCKER_LAYER_GZIP):
        return "gzip"
    if media_type in (OCI_LAYER_ZSTD, DOCKER_LAYER_ZSTD):
        return "zstd"
    if media_type in (OCI_LAYER_TAR, DOCKER_LAYER_TAR):
        return None
    raise errors.InvalidImage(f"unsupported layer media type {media_type!r}")


def layer_from_tar(tar: bytes, compression: str) -> Layer:
    data = compress(tar, compression)
    return Layer(media_type=MEDIA_TYPES[compression], data=data,
                 diff_id="sha256:" + hashlib.sha256(tar).hexdigest(), uncompressed_size=len(tar))


def make_layer(entries: list[Entry] | tuple[Entry, ...], mtime: int, compression: str) -> Layer:
    return layer_from_tar(tar_bytes(entries, mtime), compression)


def layer_members(layer: Layer) -> list[tarfile.TarInfo]:
    """The tar headers of a layer, in order (tests and `forge inspect` read images this way)."""
    with tarfile.open(fileobj=io.BytesIO(decompress(layer.data)), mode="r:") as tf:
        return tf.getmembers()


def layer_file(layer: Layer, path: str) -> bytes:
    """The content of the regular file `path` ("etc/passwd") in a layer."""
    with tarfile.open(fileobj=io.BytesIO(decompress(layer.data)), mode="r:") as tf:
        fh = tf.extractfile(path.lstrip("/"))
        if fh is None:
            raise KeyError(path)
        return fh.read()
