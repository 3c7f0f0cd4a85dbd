"""forge bench workload: a small JSON API (plain handler, standard library only).

GET  /            -> a page of 20 catalogue items as JSON (what wrk measures)
GET  /items/<id>  -> one item, 404 if unknown
POST /items       -> validate a JSON body, answer 201 with the stored item
"""

import json

from forge_runtime import Response

ITEMS = {
    i: {"id": i, "name": f"item-{i:03d}", "price_cents": 199 + 37 * i, "tags": ["bench", f"group-{i % 5}"],
        "in_stock": i % 3 != 0}
    for i in range(1, 101)
}
PAGE = [ITEMS[i] for i in range(1, 21)]


def app(request):
    if request.path == "/" and request.method == "GET":
        return Response.json({"items": PAGE, "count": len(PAGE), "total": len(ITEMS)})
    if request.path.startswith("/items/") and request.method == "GET":
        try:
            item = ITEMS[int(request.path.rsplit("/", 1)[1])]
        except (ValueError, KeyError):
            return Response.json({"error": "no such item"}, status=404)
        return Response.json(item)
    if request.path == "/items" and request.method == "POST":
        try:
            data = json.loads(request.body or b"null")
        except ValueError as exc:
            return Response.json({"error": f"invalid JSON: {exc}"}, status=400)
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            return Response.json({"error": "expected an object with a string 'name'"}, status=422)
        item = {"id": max(ITEMS) + 1, "name": data["name"], "price_cents": int(data.get("price_cents", 0)),
                "tags": [str(t) for t in data.get("tags", [])], "in_stock": True}
        return Response.json(item, status=201)
    return Response.json({"error": "not found"}, status=404)
