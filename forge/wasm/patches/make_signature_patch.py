"""Regenerate nuitka-wasm-signatures.patch from a pristine py2wasm (Nuitka) source tree.

    python forge/wasm/patches/make_signature_patch.py PY2WASM_SRC > forge/wasm/patches/nuitka-wasm-signatures.patch

Why: in WebAssembly an indirect call traps ("indirect call type mismatch") unless the callee's
signature is exactly the one the caller uses. Nuitka's C sources register many functions through
casts whose real parameter count differs from the slot's type, e.g. a getter defined as
`PyObject *get(struct Nuitka_FunctionObject *f)` stored as `getter` (which CPython calls with two
arguments). Native ABIs ignore the extra argument; wasm does not (Nuitka issue #3012).

The fix keeps every original function (they are also called directly) and adds, right before the
table or type object that registers it, a wrapper with the exact signature CPython calls; the
table entry then names the wrapper. Found by reading every PyMethodDef / PyGetSetDef entry (by
METH_* flags) and every slot cast to a known CPython slot typedef, and comparing the parameter
count and void/non-void return of the function's definition. Only mismatches are touched.
"""

from __future__ import annotations

import difflib
import re
import sys
from pathlib import Path

SUFFIX = "__forge_wasm"

# METH_* flag combination -> number of parameters CPython passes
METH_ARITY = {"METH_NOARGS": 2, "METH_O": 2, "METH_VARARGS": 2, "METH_VARARGS|METH_KEYWORDS": 3,
              "METH_FASTCALL": 3, "METH_FASTCALL|METH_KEYWORDS": 4}
# CPython slot typedefs -> (parameter count, returns a value)
SLOTS = {"inquiry": (1, True), "destructor": (1, False), "freefunc": (1, False), "reprfunc": (1, True),
         "hashfunc": (1, True), "getiterfunc": (1, True), "iternextfunc": (1, True), "unaryfunc": (1, True),
         "lenfunc": (1, True), "binaryfunc": (2, True), "getattrofunc": (2, True), "objobjproc": (2, True),
         "ssizeargfunc": (2, True), "allocfunc": (2, True), "ternaryfunc": (3, True),
         "setattrofunc": (3, True), "richcmpfunc": (3, True), "descrgetfunc": (3, True),
         "descrsetfunc": (3, True), "initproc": (3, True), "newfunc": (3, True), "traverseproc": (3, True),
         "objobjargproc": (3, True), "sendfunc": (3, True), "vectorcallfunc": (4, True)}

DEF_RE = re.compile(r"^(?:static\s+)?(?:inline\s+)?([A-Za-z_][\w\s\*]*?)\b(\w+)\s*\(([^()]*)\)\s*\{", re.M)
METHOD_RE = re.compile(r'\{\s*"(\w+)",\s*\(PyCFunction\)\s*(\w+),\s*([A-Z_ |]+?)\s*,')
GETSET_RE = re.compile(r'\{\s*\(char \*\)"(\w+)",\s*\(getter\)\s*(\w+),\s*(?:\(setter\)\s*)?(\w+)\s*,')
SLOT_RE = re.compile(r"\((%s)\)\s*(\w+)\s*," % "|".join(SLOTS))


# The wasm libpython is 3.11.8: Nuitka's PYTHON_VERSION is major*256 + minor*16 + micro.
PYTHON_VERSION = 0x3B8
COND_RE = re.compile(r"^\s*#\s*(if|ifdef|ifndef|elif|else|endif)\b(.*)$")


def _evaluate(expr: str) -> bool | None:
    """True/False for conditions on PYTHON_VERSION only; None when other macros decide."""
    expr = expr.split("//")[0].strip()
    if re.search(r"\b(?!PYTHON_VERSION\b|0x)[A-Za-z_]\w*", expr.replace("defined", "")):
        return None
    py = expr.replace("&&", " and ").replace("||", " or ").replace("!", " not ").replace(" not =", "!=")
    try:
        return bool(eval(py, {"PYTHON_VERSION": PYTHON_VERSION}))
    except Exception:
        return None


def live_lines(text: str) -> list[tuple[bool, str]]:
    """For each line: (not excluded for Python 3.11, the #if guard text still needed, or "")."""
    stack: list[dict] = []   # {"taken": bool|None (a branch known true already), "cur": bool|None, "text": str}
    out = []
    for line in text.splitlines():
        m = COND_RE.match(line)
        if m:
            kind, rest = m.group(1), m.group(2).strip()
            if kind in ("if", "ifdef", "ifndef"):
                expr = rest if kind == "if" else (f"defined({rest})" if kind == "ifdef" else f"!defined({rest})")
                val = _evaluate(expr) if kind == "if" else None
                stack.append({"cur": val, "prev": [expr], "text": f"({expr})"})
            elif kind == "elif":
                top = stack[-1]
                val = _evaluate(rest)
                prev_known = [(_evaluate(e) if not e.startswith(("defined", "!defined")) else None)
                               for e in top["prev"]]
                if any(v is True for v in prev_known):
                    val = False
                elif val is not None and all(v is False for v in prev_known):
                    pass
                elif val is not False:
                    val = None
                top["text"] = " && ".join([f"!({e})" for e in top["prev"]] + [f"({rest})"])
                top["prev"].append(rest)
                top["cur"] = val
            elif kind == "else":
                top = stack[-1]
                prev_known = [(_evaluate(e) if not e.startswith(("defined", "!defined")) else None)
                               for e in top["prev"]]
                if any(v is True for v in prev_known):
                    top["cur"] = False
                elif all(v is False for v in prev_known):
                    top["cur"] = True
                else:
                    top["cur"] = None
                top["text"] = " && ".join(f"!({e})" for e in top["prev"])
            else:
                stack.pop()
            out.append((False, ""))
            continue
        live = all(s["cur"] is not False for s in stack)
        guard = " && ".join(s["text"] for s in stack if s["cur"] is None)
        out.append((live, guard))
    return out


def _mask_dead(text: str) -> str:
    """The text with lines excluded for Python 3.11 blanked (line numbers kept)."""
    return "\n".join(line if live else "" for line, (live, _) in zip(text.splitlines(), live_lines(text)))


def definitions(texts: dict[str, str]) -> dict[str, tuple[bool, list[str]]]:
    """function name -> (returns a value, parameter declarations), from every live definition."""
    out = {}
    for text in texts.values():
        for m in DEF_RE.finditer(_mask_dead(text)):
            ret, name, params = m.group(1).strip(), m.group(2), m.group(3)
            if ret in ("return", "else", "if", "while", "for", "switch") or not ret:
                continue
            ps = [p.strip() for p in params.split(",") if p.strip()]
            if ps == ["void"]:
                ps = []
            out[name] = (ret.replace("static", "").strip() != "void", ps)
    return out


def _start_of_definition(lines: list[str], index: int) -> int:
    """Index of the line that starts the top-level definition containing line `index`."""
    i = index
    while i > 0 and not re.match(r"^(static\s|PyTypeObject\s|struct\s|PyMethodDef\s|PyGetSetDef\s)", lines[i]):
        i -= 1
    return i


def wrapper(kind: str, fn: str, params: list[str], returns: bool, want: int | None = None) -> str:
    n = len(params)
    self_arg = "(void *)self"
    if kind == "getter":
        call = f"{fn}({self_arg})" if n == 1 else None
        return f"static PyObject *{fn}{SUFFIX}(PyObject *self, void *closure) {{ return {call}; }}\n"
    if kind == "setter":
        assert n == 2, fn
        return (f"static int {fn}{SUFFIX}(PyObject *self, PyObject *value, void *closure) "
                f"{{ return {fn}({self_arg}, value); }}\n")
    if kind == "method":
        args = [self_arg, "arg", "kwds", "extra"][:want]
        decl = ", ".join(["PyObject *self", "PyObject *arg", "PyObject *kwds", "PyObject *extra"][:want])
        passed = ", ".join(args[:n] + ["NULL"] * max(0, n - want))
        return f"static PyObject *{fn}{SUFFIX}({decl}) {{ return {fn}({passed}); }}\n"
    # a slot typedef
    count, slot_returns = SLOTS[kind]
    names = ["self", "a1", "a2", "a3"][:count]
    decl = ", ".join(f"PyObject *{x}" for x in names)
    passed = ", ".join(["(void *)self"] + names[1:n])
    ret_type = "int" if kind in ("inquiry", "objobjproc", "traverseproc", "setattrofunc", "descrsetfunc",
                                 "initproc", "objobjargproc") else "PyObject *"
    if slot_returns and not returns:
        return f"static {ret_type} {fn}{SUFFIX}({decl}) {{ {fn}({passed}); return 0; }}\n"
    return f"static {ret_type} {fn}{SUFFIX}({decl}) {{ return {fn}({passed}); }}\n"


def patch_file(text: str, defs: dict) -> tuple[str, list[str]]:
    lines = text.splitlines(keepends=True)
    liveness = live_lines(text)
    inserts: dict[int, list[str]] = {}
    fixed: list[str] = []
    done: set[str] = set()

    def need(line_no: int, kind: str, fn: str, want: int | None = None) -> None:
        returns, params = defs[fn]
        guard = liveness[line_no][1]
        key = f"{kind}:{fn}:{guard}"
        if key not in done:
            done.add(key)
            at = _start_of_definition(lines, line_no)
            code = wrapper(kind, fn, params, returns, want)
            if guard:
                code = f"#if {guard}\n{code}#endif\n"
            inserts.setdefault(at, []).append(code)
        fixed.append(f"{kind} {fn} ({len(params)} parameter(s))")

    for i, line in enumerate(lines):
        if not liveness[i][0]:
            continue
        new = line
        for m in METHOD_RE.finditer(line):
            name, fn, flags = m.groups()
            flags = "|".join(f.strip() for f in flags.split("|")
                             if f.strip() not in ("METH_STATIC", "METH_CLASS", "METH_COEXIST"))
            want = METH_ARITY.get(flags)
            if fn in defs and want is not None and len(defs[fn][1]) != want:
                need(i, "method", fn, want)
                new = new.replace(f"(PyCFunction){fn},", f"(PyCFunction){fn}{SUFFIX},", 1)
        for m in GETSET_RE.finditer(line):
            name, get, set_ = m.groups()
            if get in defs and len(defs[get][1]) != 2:
                need(i, "getter", get)
                new = new.replace(f"(getter){get},", f"(getter){get}{SUFFIX},", 1)
            if set_ not in ("NULL", "0") and set_ in defs and len(defs[set_][1]) != 3:
                need(i, "setter", set_)
                new = new.replace(f"(setter){set_},", f"(setter){set_}{SUFFIX},", 1)
        for m in SLOT_RE.finditer(line):
            kind, fn = m.groups()
            if fn not in defs:
                continue
            count, returns = SLOTS[kind]
            if len(defs[fn][1]) != count or defs[fn][0] != returns:
                need(i, kind, fn)
                new = new.replace(f"({kind}){fn},", f"({kind}){fn}{SUFFIX},", 1)
        lines[i] = new
    out = []
    for i, line in enumerate(lines):
        if i in inserts:
            out.append("// forge: exact-signature wrappers for WebAssembly (indirect calls must match).\n")
            out.extend(inserts[i])
        out.append(line)
    return "".join(out), fixed


def main(src_root: str) -> int:
    static = Path(src_root) / "nuitka" / "build" / "static_src"
    files = sorted(static.glob("*.c"))
    texts = {f.name: f.read_text() for f in files}
    defs = definitions(texts)
    total = []
    for f in files:
        new, fixed = patch_file(texts[f.name], defs)
        if not fixed:
            continue
        total += [f"{f.name}: {x}" for x in fixed]
        rel = f"nuitka/build/static_src/{f.name}"
        sys.stdout.writelines(difflib.unified_diff(texts[f.name].splitlines(keepends=True),
                                                   new.splitlines(keepends=True), f"a/{rel}", f"b/{rel}"))
    print(f"{len(total)} table entries fixed:", *total, sep="\n  ", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
