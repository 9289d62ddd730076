"""The OpenAPI 3.1 document, generated from the declared operations and their pydantic models."""
from __future__ import annotations

import html
import re

from pydantic import BaseModel

from loyalty_core.bounds import MAX_COUNT
from loyalty_core.errors import LoyaltyError
from loyalty_core.jobs import JOBS

from . import schemas as s
from .api import Operation
from .auth import RIGHTS
from .schemas import Problem

SECURITY = {
    "admin": [{"adminKey": []}],
    "terminal": [{"terminalId": [], "terminalSignature": [], "terminalTimestamp": [], "terminalNonce": []}],
    "member": [{"memberToken": []}],
}


def build(operations: list[Operation], version: str) -> dict:
    components: dict[str, dict] = {}
    paths: dict[str, dict] = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, components)
    _schema(Problem, components)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Loyalty gateway", "version": version,
                 "description": "Members, points, stored value and coupons across POS, WeChat mini-programs "
                                "and marketplace stores. Money is integer fen; errors are application/problem+json."},
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": {
            "adminKey": {"type": "http", "scheme": "bearer", "description": "admin key (owner, operator, auditor)"},
            "memberToken": {"type": "http", "scheme": "bearer", "description": "member session token"},
            "terminalId": {"type": "apiKey", "in": "header", "name": "X-Terminal-Id"},
            "terminalTimestamp": {"type": "apiKey", "in": "header", "name": "X-Timestamp"},
            "terminalNonce": {"type": "apiKey", "in": "header", "name": "X-Nonce"},
            "terminalSignature": {"type": "apiKey", "in": "header", "name": "X-Signature",
                                  "description": "hex HMAC-SHA256(secret, METHOD\\nPATH_WITH_QUERY\\nTIMESTAMP\\nNONCE\\nSHA256_HEX(body))"},
        }},
    }


def _schema(model: type[BaseModel], components: dict) -> dict:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(schema.pop("$defs", {}))
    components[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


# Answers that the route declarations (gateway/routes/*) do not carry yet. Each entry is true of
# the handler today; move it into the route's ``Operation`` (response=...) when that is touched.
MEDIA_TYPES = {("GET", "/metrics"): "text/plain", ("GET", "/docs"): "text/html", ("GET", "/v1/mp/me/code.png"): "image/png",
               ("GET", "/v1/hooks/wechat/{app_id}"): "text/plain", ("POST", "/v1/hooks/wechat/{app_id}"): "text/plain"}
RESPONSES: dict[tuple[str, str], type[BaseModel]] = {
    ("GET", "/v1/stores"): s.StorePage, ("GET", "/v1/admin-keys"): s.AdminKeyPage,
    ("GET", "/healthz"): s.Health, ("GET", "/readyz"): s.Ready,
}
OPENAPI_DOCUMENT = {"type": "object", "required": ["openapi", "info", "paths", "components"],
                    "properties": {"openapi": {"type": "string"}, "info": {"type": "object"},
                                   "paths": {"type": "object"}, "components": {"type": "object"}}}
# The same (store, txn_id), (order, refund_id) or (store, topup_id) again answers 200 with the first result.
# Creations that answer 200 when there was nothing to create: what the 200 means.
ALSO_200 = {
    ("POST", "/v1/pos/orders"): "Duplicate: the first answer again, with duplicate: true",
    ("POST", "/v1/pos/orders/{txn_id}/refunds"): "Duplicate: the first answer again, with duplicate: true",
    ("POST", "/v1/pos/stored-value/topups"): "Duplicate: the first answer again, with duplicate: true",
    ("POST", "/v1/channels"): "Reconnected: the app's connection replaced",
    ("POST", "/v1/mp/join"): "Joined already: the member, created false",
    ("POST", "/v1/mp/me/bindings"): "Bound already to this member",
}

ID = {"type": "integer", "minimum": 1, "maximum": MAX_COUNT}
PATH_PARAMETERS = {
    "member_id": ID, "key_id": ID,
    "store_code": {"type": "string", "minLength": 1, "maxLength": 32, "pattern": r"^[A-Za-z0-9_.-]+$"},
    "txn_id": {"type": "string", "minLength": 1, "maxLength": 64, "pattern": r"^[A-Za-z0-9_.:-]+$"},
}
JOB_NAME = {"type": "string", "enum": sorted(JOBS)}  # any other name is 404 unknown_job
REPLAYED = {"Idempotent-Replayed": {"description": "true when this is the stored answer of an earlier call "
                                                  "with the same Idempotency-Key",
                                    "schema": {"type": "string", "enum": ["true"]}}}


def _success(op: Operation, components: dict) -> dict:
    success: dict = {"description": "OK" if op.status != 201 else "Created"}
    route = (op.method, op.path)
    if route in MEDIA_TYPES:
        success["content"] = {MEDIA_TYPES[route]: {"schema": {"type": "string"}}}
    elif op.response is not None or route in RESPONSES:
        success["content"] = {"application/json": {"schema": _schema(op.response or RESPONSES[route], components)}}
    elif op.path == "/openapi.json":
        success["content"] = {"application/json": {"schema": OPENAPI_DOCUMENT}}
    elif op.status != 204:
        success["content"] = {"application/json": {"schema": {"type": "object"}}}
    if op.idempotent and op.status != 204:
        success["headers"] = REPLAYED
    return success


def _operation(op: Operation, components: dict) -> dict:
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    success = _success(op, components)
    responses: dict = {str(op.status): success}
    if (also := ALSO_200.get((op.method, op.path))) is not None:
        responses["200"] = {**success, "description": also}
    for status, codes in sorted(_errors_by_status(op).items()):
        responses[str(status)] = {"description": "codes: " + ", ".join(sorted(codes)), "content": problem}
    operation_id = f"{op.handler.__module__.rsplit('.', 1)[-1]}_{op.handler.__name__}"
    entry: dict = {"summary": op.summary, "tags": [op.tag], "operationId": operation_id,
                   "parameters": _parameters(op), "responses": responses}
    if op.description:
        entry["description"] = op.description
    if op.auth:
        entry["security"] = SECURITY[op.auth.split(":")[0]]
    if op.body is not None:
        entry["requestBody"] = {"required": True, "content": {"application/json": {"schema": _schema(op.body, components)}}}
    return entry


def _statuses() -> dict[str, int]:
    """Each code of the error tree (loyalty_core.errors) with its status, and the few answered
    before a route runs (gateway/problems.py)."""
    found, todo = {}, [LoyaltyError]
    while todo:
        kind = todo.pop()
        if "code" in vars(kind):  # a class that names its own code
            found[kind.code] = kind.status
        todo += kind.__subclasses__()
    return {**found, "not_ready": 503, "payload_too_large": 413}


STATUS = _statuses()
# What every caller of a scheme can be answered before its route runs (gateway/auth.py).
AUTH_ERRORS = {"admin": {"unauthorized"}, "member": {"unauthorized"},
               "terminal": {"unauthorized", "stale_request", "replayed_request", "invalid_signature"}}


def _errors_by_status(op: Operation) -> dict[int, set[str]]:
    codes = set(op.errors)
    if op.auth:
        kind, _, right = op.auth.partition(":")
        codes |= AUTH_ERRORS[kind] | {"service_unavailable"}  # PostgreSQL or Redis unreachable (Retry-After)
        if right and any(right not in rights for rights in RIGHTS.values()):
            codes.add("forbidden")
    if op.body is not None:
        codes |= {"validation_error", "invalid_json", "payload_too_large"}  # over 2 MiB (app.MAX_BODY)
    if op.query is not None:
        codes.add("validation_error")
        if "cursor" in op.query.model_fields:
            codes.add("bad_request")  # a cursor this API did not give out
    if "{" in op.path and not any(STATUS.get(code) == 404 for code in codes):
        codes.add("not_found")  # an unknown id in the path
    if op.idempotent:
        codes |= {"request_in_progress", "idempotency_key_reused", "bad_request"}
        if op.idempotent is True:
            codes.add("idempotency_key_required")
    grouped: dict[int, set[str]] = {}
    for code in codes:
        grouped.setdefault(STATUS.get(code, 422), set()).add(code)
    return grouped


def _parameters(op: Operation) -> list[dict]:
    params = [{"name": name, "in": "path", "required": True, "schema": _path_schema(op, name)}
              for name in re.findall(r"\{([^}]+)\}", op.path)]
    if op.query is not None:
        properties = op.query.model_json_schema()["properties"]
        for name, field in op.query.model_fields.items():
            sent = field.alias or name  # ``from_`` is sent as ``from``
            params.append({"name": sent, "in": "query", "required": field.is_required(),
                           "description": field.description or "", "schema": _query_schema(properties[sent])})
    if op.idempotent:
        params.append({"name": "Idempotency-Key", "in": "header", "required": op.idempotent is True,
                       "schema": {"type": "string", "pattern": r"^[\x20-\x7e]{1,128}$"},
                       "description": "1-128 printable ASCII characters, scoped to the chain; kept 48 h"})
    return params


def _path_schema(op: Operation, name: str) -> dict:
    if op.path == "/v1/jobs/{name}":
        return JOB_NAME
    return PATH_PARAMETERS.get(name, {"type": "string"})


def _query_schema(schema: dict) -> dict:
    """A query field's own JSON schema, without pydantic's ``null`` branch and titles (a query
    parameter is either sent or not) and with the default kept."""
    branches = [b for b in schema.get("anyOf", [schema]) if b.get("type") != "null"]
    plain = {k: v for k, v in (branches[0] if len(branches) == 1 else {"anyOf": branches}).items() if k != "title"}
    if schema.get("default") is not None:
        plain["default"] = schema["default"]
    return plain


def docs_page(spec: dict) -> str:
    """A readable reference that needs no CDN: one section per operation."""
    rows = []
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            codes = ", ".join(f"{status}" for status in op["responses"])
            rows.append(f"<tr><td><code>{method.upper()}</code></td><td><code>{html.escape(path)}</code></td>"
                        f"<td>{html.escape(op['summary'])}<br><small>{html.escape(op.get('description', ''))}</small></td>"
                        f"<td>{codes}</td></tr>")
    return ("<!doctype html><html><head><meta charset='utf-8'><title>Loyalty gateway API</title>"
            "<style>body{font-family:sans-serif;margin:2em}td{border-bottom:1px solid #ddd;padding:4px 8px;"
            "vertical-align:top}</style></head><body><h1>Loyalty gateway API</h1>"
            "<p>Machine-readable: <a href='/openapi.json'>/openapi.json</a>. Money is integer fen; errors are "
            "application/problem+json.</p><table><tr><th>method</th><th>path</th><th>what</th><th>answers</th></tr>"
            + "".join(rows) + "</table></body></html>")
