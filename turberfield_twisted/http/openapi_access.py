"""
The access part of the OpenAPI document: the operations of ``/tokens``,
``/audit`` and ``/whoami``, their schemas, and the security schemes.
:mod:`.openapi` adds them to its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from turberfield_twisted.access.roles import Role
from turberfield_twisted.http.schemas import JSON, ref

__all__ = ["ACCESS_OPERATIONS", "ACCESS_SCHEMAS", "SECURITY_SCHEMES"]

_ROLES = [role.value for role in Role]


_NAME = {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"}


_SCOPE = {"type": "array", "maxItems": 64,
          "items": {"type": "string", "minLength": 1, "maxLength": 256},
          "description": "Module or service names the token may act on (empty: any)."}


_TOKEN = {"name": _NAME, "role": {"enum": _ROLES}, "scope": _SCOPE,
          "created": {"type": "number"}, "expires": {"type": ["number", "null"]},
          "last_used": {"type": ["number", "null"]}}


#: The schemas of the access operations.
ACCESS_SCHEMAS: Mapping[str, Any] = {
    "Token": {"type": "object", "required": list(_TOKEN), "properties": _TOKEN},
    "Tokens": {"type": "object", "required": ["tokens"],
               "properties": {"tokens": {"type": "array", "items": ref("Token")}}},
    "NewToken": {"type": "object", "required": [*_TOKEN, "secret"],
                 "properties": {**_TOKEN, "secret": {"type": "string"}}},
    "MakeToken": {"type": "object", "required": ["name", "role"],
                  "additionalProperties": False,
                  "properties": {"name": _NAME, "role": {"enum": _ROLES}, "scope": _SCOPE,
                                 "expires_in": {"type": "number", "exclusiveMinimum": 0,
                                                "maximum": 315360000}}},
    "Rotate": {"type": "object", "additionalProperties": False,
               "properties": {"grace": {"type": "number", "minimum": 0, "maximum": 604800,
                                        "description": "Seconds the old token works on."}}},
    "Rotated": {"type": "object", "required": ["name", "role", "secret", "grace"],
                "properties": {"name": {"const": "admin"}, "role": {"const": "admin"},
                               "secret": {"type": "string"}, "grace": {"type": "number"}}},
    "AuditRecord": {"type": "object",
                    "required": ["time", "token", "role", "remote", "method", "path",
                                 "status", "seq"],
                    "properties": {"time": {"type": "number"}, "token": {"type": "string"},
                                   "role": {"type": "string"}, "remote": {"type": "string"},
                                   "method": {"type": "string"}, "path": {"type": "string"},
                                   "status": {"type": "integer"}, "seq": {"type": "integer"}}},
    "Audit": {"type": "object", "required": ["records", "dropped"],
              "properties": {"records": {"type": "array", "items": ref("AuditRecord")},
                             "dropped": {"type": "integer", "minimum": 0}}},
    "Whoami": {"type": "object", "required": ["name", "role", "scope"],
               "properties": {"name": {"type": "string"}, "role": {"enum": _ROLES},
                              "scope": _SCOPE}},
}


#: The security schemes: any token with a role, and a job's own.
SECURITY_SCHEMES: Mapping[str, Any] = {
    "token": {"type": "http", "scheme": "bearer",
              "description": "A token with a role: the admin token (the state dir's"
                             " admin.token) or a named one (POST /tokens). An operation's"
                             " security lists the least role it needs (x-role too); a"
                             " lower one is answered 403 naming it."},
    "job": {"type": "http", "scheme": "bearer",
            "description": "A job's own token (on its stdin)."},
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(ref("Error"), description)


_UNKEPT = {"503": _error("The state store failed, or the daemon is stopping: nothing changed.")}


#: The access operations, keyed as :data:`~.openapi.OPERATIONS` is.
ACCESS_OPERATIONS: Mapping[tuple[str, str], dict[str, Any]] = {
    ("GET", "/tokens"): {
        "summary": "The named tokens: name, role, scope, expiry, last use; never a secret.",
        "responses": {"200": _json(ref("Tokens"), "Oldest first.")}},
    ("POST", "/tokens"): {
        "summary": "Make a named token; its secret is shown this once.",
        "responses": {"201": _json(ref("NewToken"), "The token, with its secret."),
                      "400": _error("A bad name, role, scope or expiry."),
                      "409": _error("A token of that name exists (or it is 'admin'), or"
                                    " there are too many."),
                      "413": _error("The body is over max_body."), **_UNKEPT},
        "requestBody": {"required": True,
                        "content": {JSON: {"schema": ref("MakeToken")}}}},
    ("DELETE", "/tokens/{name}"): {
        "summary": "Revoke a named token at once; its open event streams end.",
        "responses": {"204": {"description": "Revoked."},
                      "404": _error("No token has that name."),
                      "409": _error("The admin token is rotated, not revoked."), **_UNKEPT},
        "parameters": [{"name": "name", "in": "path", "required": True,
                        "schema": {"type": "string"}}]},
    ("POST", "/tokens/admin/rotate"): {
        "summary": "A new admin token, written to admin.token; the old one works for"
                   " grace seconds more (default 0), then never again. No restart.",
        "responses": {"200": _json(ref("Rotated"), "The new admin token."),
                      "400": _error("A bad grace."),
                      "413": _error("The body is over max_body.")},
        "requestBody": {"required": False, "content": {JSON: {"schema": ref("Rotate")}}}},
    ("GET", "/audit"): {
        "summary": "The last audit records (changes and refusals), oldest first.",
        "responses": {"200": _json(ref("Audit"), "And how many older ones were dropped."),
                      "400": _error("A bad lines."),
                      "404": _error("This daemon keeps no audit trail.")},
        "parameters": [{"name": "lines", "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 1000}}]},
    ("GET", "/whoami"): {
        "summary": "The caller's token: its name, role and scope.",
        "responses": {"200": _json(ref("Whoami"), "The caller.")}},
}
