"""The OpenAPI 3 document, generated from the routes and their marshmallow schemas.

Each API view declares its schemas with ``@doc(...)``; the document walks the
URL map, so a route cannot exist without appearing here.
"""
from __future__ import annotations

import copy
import re

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import current_app, jsonify
from werkzeug.routing import IntegerConverter

from ..idempotency import MAX_KEY_LENGTH
from . import bp
from . import schemas as s
from .schemas import ID_MAX


def doc(summary: str, *, request=None, response=None, status: int | tuple[int, ...] = 200, errors=(), public=False,
        query=None, idempotent=False, media: str | None = None):
    """Attach OpenAPI metadata to a view function.

    ``errors`` lists the statuses the view itself answers (403, 404, 409, 429); the ones every
    operation of a kind can answer are added by :func:`build_spec` (400 always, from the edge's
    guard; 413/422 with a body, 422 with a query schema or an Idempotency-Key, 401 without
    ``public``). ``media`` is the
    response's type when it is not JSON (a QR image). ``status`` may be a tuple when the view
    answers more than one success status with the same body.
    """
    def decorator(view):
        view._openapi = {"summary": summary, "request": request, "response": response, "status": status,
                         "errors": errors, "public": public, "query": query, "idempotent": idempotent,
                         "media": media}
        return view
    return decorator


ERROR_DESCRIPTIONS = {
    400: "invalid_json: the body is not a JSON object (or holds characters that are not UTF-8); "
         "invalid_characters: a NUL character in the path, query, a header or the body; too_deep: JSON nested "
         "too deeply",
    401: "unauthorized: no valid bearer token",
    403: "forbidden: not allowed for this user",
    404: "not_found",
    409: "conflict (e.g. already decided, code used, idempotency_conflict)",
    413: "too_large: the body is over the size limit",
    422: "invalid: per-field messages in error.fields",
    429: "rate_limited: try again later",
}


def _path_parameter(rule, name: str) -> dict:
    converter = rule._converters[name]
    if isinstance(converter, IntegerConverter):
        # ids start at 1 and are INTEGER columns; a larger number is a 404 (see ids_within_columns)
        schema = {"type": "integer", "minimum": 1, "maximum": min(converter.max or ID_MAX, ID_MAX)}
    else:
        schema = {"type": "string", "minLength": 1}
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _plain_query_parameters(parameters: list) -> None:
    """A query string has no null: optional query parameters are absent, not ``null``."""
    for parameter in parameters:
        if parameter.get("in") != "query":
            continue
        schema = parameter.get("schema", {})
        if schema.pop("nullable", None):
            if "enum" in schema:
                schema["enum"] = [value for value in schema["enum"] if value is not None]
            if schema.get("default", 0) is None:
                del schema["default"]


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
            params = [_path_parameter(rule, name) for name in sorted(rule.arguments)]
            if meta["idempotent"]:
                required = meta["idempotent"] != "optional"
                params.append({"name": "Idempotency-Key", "in": "header", "required": required,
                               "description": "unique per request; a repeat replays the first answer"
                                              + ("" if required else " (an empty key is no key)"),
                               "schema": {"type": "string", "minLength": 1 if required else 0,
                                          "maxLength": MAX_KEY_LENGTH}})
            if params:
                operation["parameters"] = params
            if meta["query"] is not None:
                operation.setdefault("parameters", []).append({"in": "query", "schema": meta["query"]})
            if meta["request"] is not None:
                operation["requestBody"] = {"required": True,
                                            "content": {"application/json": {"schema": meta["request"]}}}
            ok: dict = {"description": "OK"}
            if meta["media"] is not None:
                ok["content"] = {meta["media"]: {"schema": {"type": "string", "format": "binary"}}}
            elif meta["response"] is not None:
                ok["content"] = {"application/json": {"schema": meta["response"]}}
            for status in meta["status"] if isinstance(meta["status"], tuple) else (meta["status"],):
                operation["responses"][str(status)] = copy.deepcopy(ok)
            errors = set(meta["errors"]) | {400}  # the edge's guard (moralbank/edge.py) answers any operation
            if meta["request"] is not None:
                errors |= {413, 422}
            if meta["query"] is not None or meta["idempotent"]:
                errors.add(422)
            if not meta["public"]:
                errors.add(401)
            for status in sorted(errors):
                operation["responses"][str(status)] = {
                    "description": ERROR_DESCRIPTIONS[status],
                    "content": {"application/json": {"schema": "Error"}}}
            if not meta["public"]:
                operation["security"] = [{"bearer": []}]
            paths.setdefault(path, {})[method.lower()] = operation
    for path, operations in sorted(paths.items()):
        spec.path(path=path, operations=operations)
    document = spec.to_dict()
    for operations in document["paths"].values():
        for operation in operations.values():
            _plain_query_parameters(operation.get("parameters", []))
    return document


@bp.get("/openapi.json")
def openapi():
    return jsonify(build_spec(current_app))
