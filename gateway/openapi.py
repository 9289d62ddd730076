"""The OpenAPI 3.1 document, generated from the declared operations and their pydantic models."""
from __future__ import annotations

import html
import re

from pydantic import BaseModel

from .api import Operation
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


def _operation(op: Operation, components: dict) -> dict:
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    success: dict = {"description": "OK" if op.status != 201 else "Created"}
    if op.response is not None:
        success["content"] = {"application/json": {"schema": _schema(op.response, components)}}
    elif op.status != 204:
        success["content"] = {"application/json": {"schema": {"type": "object"}}}
    responses: dict = {str(op.status): success}
    for status, codes in _errors_by_status(op).items():
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


STATUS = {"validation_error": 422, "invalid_json": 400, "idempotency_key_required": 400, "unauthorized": 401,
          "stale_request": 401, "replayed_request": 401, "invalid_signature": 401, "forbidden": 403,
          "not_found": 404, "order_not_found": 404, "code_not_found": 404, "code_expired": 410,
          "already_exists": 409, "code_used": 409, "last_owner_key": 409, "unknown_job": 404,
          "member_not_found": 404, "not_ready": 503, "request_in_progress": 409, "idempotency_key_reused": 422}


def _errors_by_status(op: Operation) -> dict[int, set[str]]:
    codes = set(op.errors)
    if op.body is not None:
        codes |= {"validation_error", "invalid_json"}
    if op.idempotent:
        codes |= {"request_in_progress", "idempotency_key_reused"}
        if op.idempotent is True:
            codes.add("idempotency_key_required")
    grouped: dict[int, set[str]] = {}
    for code in codes:
        grouped.setdefault(STATUS.get(code, 422), set()).add(code)
    return grouped


def _parameters(op: Operation) -> list[dict]:
    params = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
              for name in re.findall(r"\{([^}]+)\}", op.path)]
    if op.query is not None:
        for name, field in op.query.model_fields.items():
            params.append({"name": name, "in": "query", "required": field.is_required(),
                           "description": field.description or "", "schema": {"type": "string"}})
    if op.idempotent:
        params.append({"name": "Idempotency-Key", "in": "header", "required": op.idempotent is True,
                       "schema": {"type": "string", "minLength": 1, "maxLength": 128},
                       "description": "1-128 printable ASCII characters, scoped to the chain; kept 48 h"})
    return params


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
