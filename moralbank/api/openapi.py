"""The OpenAPI 3 document, generated from the routes and their marshmallow schemas.

Each API view declares its schemas with ``@doc(...)``; the document walks the
URL map, so a route cannot exist without appearing here.
"""
from __future__ import annotations

import re

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import current_app, jsonify

from . import bp
from . import schemas as s


def doc(summary: str, *, request=None, response=None, status: int = 200, errors=(), public=False,
        query=None, idempotent=False):
    """Attach OpenAPI metadata to a view function."""
    def decorator(view):
        view._openapi = {"summary": summary, "request": request, "response": response, "status": status,
                         "errors": errors, "public": public, "query": query, "idempotent": idempotent}
        return view
    return decorator


def build_spec(app) -> dict:
    # Paths below are relative to the API's base, so the document names it as the server.
    spec = APISpec(title="moralbank API", version="1", openapi_version="3.0.3",
                   plugins=[MarshmallowPlugin()], servers=[{"url": "/api/v1"}],
                   info={"description": "道德银行 / 积分超市 JSON API. Errors use one envelope: ErrorSchema."})
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    spec.components.schema("Error", schema=s.ErrorSchema)
    paths: dict[str, dict] = {}
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/") or rule.endpoint == "api.openapi":
            continue
        view = app.view_functions[rule.endpoint]
        meta = getattr(view, "_openapi", None) or getattr(getattr(view, "__wrapped__", None), "_openapi", None)
        if meta is None:
            continue
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule[len("/api/v1"):])
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            operation: dict = {"summary": meta["summary"], "responses": {}}
            params = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                      for name in rule.arguments]
            if meta["idempotent"]:
                params.append({"name": "Idempotency-Key", "in": "header",
                               "required": meta["idempotent"] != "optional",
                               "schema": {"type": "string", "maxLength": 128}})
            if params:
                operation["parameters"] = params
            if meta["query"] is not None:
                operation.setdefault("parameters", []).append({"in": "query", "schema": meta["query"]})
            if meta["request"] is not None:
                operation["requestBody"] = {"required": True,
                                            "content": {"application/json": {"schema": meta["request"]}}}
            ok: dict = {"description": "OK"}
            if meta["response"] is not None:
                ok["content"] = {"application/json": {"schema": meta["response"]}}
            operation["responses"][str(meta["status"])] = ok
            for status in sorted(set(meta["errors"]) | ({422} if meta["request"] is not None else set())
                                 | (set() if meta["public"] else {401})):
                operation["responses"][str(status)] = {
                    "description": "error", "content": {"application/json": {"schema": "Error"}}}
            if not meta["public"]:
                operation["security"] = [{"bearer": []}]
            paths.setdefault(path, {})[method.lower()] = operation
    for path, operations in sorted(paths.items()):
        spec.path(path=path, operations=operations)
    return spec.to_dict()


@bp.get("/openapi.json")
def openapi():
    return jsonify(build_spec(current_app))
