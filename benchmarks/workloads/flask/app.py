"""forge bench workload: Flask rendering a Jinja template; MarkupSafe's C speedups are built from
its sdist by forge and linked into the binary as the built-in module `markupsafe._speedups`."""

import sys

import markupsafe
from flask import Flask, jsonify, request
from jinja2 import DictLoader

app = Flask(__name__)
# Templates live in the code: a FROM scratch image has no templates/ directory next to the binary.
app.jinja_loader = DictLoader({"page.html": """<!doctype html>
<title>{{ title }}</title>
<h1>{{ title }}</h1>
<ul>{% for item in items %}<li class="{{ loop.cycle('odd', 'even') }}">{{ item.name }}: {{ item.note }}</li>{% endfor %}</ul>
<p>{{ who }}</p>
"""})
ITEMS = [{"name": f"item {i}", "note": f"<b>{i}</b> & more"} for i in range(20)]


@app.get("/")
def index():
    from flask import render_template
    return render_template("page.html", title="forge + Flask", items=ITEMS,
                           who=request.args.get("who", "<script>alert(1)</script>"))


@app.get("/native")
def native():
    """Which implementation MarkupSafe runs: the C speedups as a built-in, or its Python fallback."""
    return jsonify(
        # getattr: Nuitka folds `x in sys.builtin_module_names` at compile time (its own interpreter's)
        speedups_builtin="markupsafe._speedups" in getattr(sys, "builtin_module_names"),
        speedups_loaded="markupsafe._speedups" in sys.modules,
        escape_inner_module=getattr(markupsafe, "_escape_inner").__module__,
        escape_inner_type=type(getattr(markupsafe, "_escape_inner")).__name__,
        escaped=str(markupsafe.escape("<a href='x'>&</a>")),
    )


@app.get("/healthz")
def healthz():
    return jsonify(ok=True)
