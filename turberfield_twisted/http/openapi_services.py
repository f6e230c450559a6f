"""
The OpenAPI description of the ``/services`` routes
(:class:`~turberfield_twisted.http.services_api.ServicesAPI`): their
operations and the shapes they answer with, which
:func:`~turberfield_twisted.http.openapi.document` takes beside the rest
(it refuses a route with no entry here, and an entry with no route); the
role each needs is :data:`~.roles.ROLES`'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from turberfield_twisted.config.names import KEY, MAX_VALUE, SERVICE_NAME, SESSION
from turberfield_twisted.http.schemas import JSON, ref
from turberfield_twisted.http.service_args import SERVICE_WAITS
from turberfield_twisted.services.model import RolloutState

__all__ = ["LISTEN", "SERVICE_OPERATIONS", "SERVICE_SCHEMAS"]

_STRINGS = {"type": "object", "additionalProperties": {"type": "string"}}


#: Overrides, as a launch's (a key of one line's value).
_OVERRIDES = {"type": "object", "propertyNames": {"pattern": KEY.pattern},
              "additionalProperties": {"anyOf": [
                  {"type": "string", "maxLength": MAX_VALUE, "pattern": "^[^\r\n]*$"},
                  {"type": "number"}, {"type": "boolean"}]}}


_PORT = "(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"


_OCTET = "(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"


_H = "[0-9a-fA-F]{1,4}"


#: An IPv6 address, every shortened form of it (no zone, no IPv4 tail).
_IPV6 = "|".join([f"({_H}:){{7}}{_H}", f"({_H}:){{1,7}}:", f"({_H}:){{1,6}}:{_H}",
                  *(f"({_H}:){{1,{5 - n}}}(:{_H}){{1,{n + 2}}}" for n in range(4)),
                  f"{_H}:((:{_H}){{1,6}})", f":((:{_H}){{1,7}}|:)"])


#: A service's ``listen``: PORT, IPV4:PORT or [IPV6]:PORT, as the API reads it.
LISTEN = rf"^({_PORT}|{_OCTET}(\.{_OCTET}){{3}}:{_PORT}|\[({_IPV6})\]:{_PORT})$"


#: The shapes the ``/services`` routes answer with and take.
SERVICE_SCHEMAS: Mapping[str, Any] = {
    "Rollout": {
        "type": "object", "required": ["state", "started", "finished", "total", "replaced",
                                       "reason"],
        "properties": {"state": {"enum": [state.value for state in RolloutState]},
                       "started": {"type": "number"},
                       "finished": {"type": ["number", "null"]},
                       "total": {"type": "integer"},
                       "replaced": {"type": "integer",
                                    "description": "New instances ready (all, once done)."},
                       "reason": {"type": ["string", "null"],
                                  "description": "Why it failed (the instance's error)."}}},
    "Service": {
        "type": "object",
        "required": ["name", "module", "listen", "relay", "spread", "instances", "surge",
                     "max_unavailable", "session", "config", "declared", "ready", "rollout",
                     "members"],
        "properties": {
            "name": {"type": "string"}, "module": {"type": "string"},
            "listen": {"type": ["string", "null"],
                       "description": "The shared address, HOST:PORT; null for a module"
                                      " Slurm runs (a socket can't span hosts: each"
                                      " instance listens on its own node)."},
            "relay": {"type": "string", "description": "Its relay on this API,"
                      " /services/NAME/proxy/: the only address of a Slurm service."},
            "spread": {"enum": ["nodes", "none", None],
                       "description": "A Slurm service's: nodes (its instances on different"
                                      " nodes where it can) or none; null for a local one."},
            "instances": {"type": "integer", "description": "How many it runs."},
            "surge": {"type": "integer"}, "max_unavailable": {"type": "integer"},
            "session": {"type": ["string", "null"]}, "config": _STRINGS,
            "declared": {"type": "boolean"},
            "ready": {"type": "integer", "description": "Instances ready now."},
            "rollout": {"anyOf": [ref("Rollout"), {"type": "null"}],
                        "description": "The rollout that runs, else the last one."},
            "last_error": {"type": ["string", "null"]},
            "members": {"type": "array", "items": ref("Job"),
                        "description": "Its instances, oldest first."}}},
    "Services": {"type": "object", "required": ["services"],
                 "properties": {"services": {"type": "array", "items": ref("Service")}}},
    "NewService": {
        "type": "object", "required": ["name", "module"], "additionalProperties": False,
        "not": {"required": ["listen", "spread"]},  # spread: only without listen
        # both surge and max_unavailable 0 would leave a rollout no step to take
        "anyOf": [{"properties": {"surge": {"minimum": 1}}},
                  {"required": ["max_unavailable"],
                   "properties": {"max_unavailable": {"minimum": 1}}}],
        "properties": {
            "name": {"type": "string", "pattern": SERVICE_NAME.pattern,
                     "description": "409 if a service or a config section has it."},
            "module": {"type": "string", "minLength": 1,
                       "description": "A module with a section in the daemon's config."},
            "listen": {"anyOf": [{"type": "integer", "minimum": 1, "maximum": 65535},
                                 {"type": "string", "pattern": LISTEN}],
                       "description": "PORT (on 127.0.0.1), HOST:PORT or [IPV6]:PORT; 409 if"
                                      " it can't be bound there. Required for a module that"
                                      " runs on this host, refused (409) for one Slurm"
                                      " runs."},
            "spread": {"enum": ["nodes", "none"], "default": "nodes",
                       "description": "Only for a module Slurm runs: nodes sends each"
                                      " instance to the node fewest of its siblings use."},
            "instances": {"type": "integer", "minimum": 1,
                          "description": "403 over the daemon's max_instances."},
            "surge": {"type": "integer", "minimum": 0},
            "max_unavailable": {"type": "integer", "minimum": 0},
            "session": {"type": ["string", "null"], "pattern": SESSION.pattern},
            "config": {**_OVERRIDES, "type": ["object", "null"],
                       "description": "Overrides of keys the module's section lists as"
                                      " overridable (403 for another)."}}},
    "Scale": {"type": "object", "required": ["instances"], "additionalProperties": False,
              "properties": {"instances": {"type": "integer", "minimum": 1,
                                           "description": "403 over max_instances."}}},
    "NewRollout": {
        "type": "object", "additionalProperties": False,
        "properties": {"module": {"type": "string", "minLength": 1},
                       "config": {**_OVERRIDES, "type": ["object", "null"]}}},
}


def json_answer(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def error_answer(description: str) -> dict[str, Any]:
    return json_answer(ref("Error"), description)


def operation(summary: str, responses: dict[str, Any], **more: Any) -> dict[str, Any]:
    """An operation; its security (401, 403, 429 too) comes from the role table."""
    return {"summary": summary, "responses": responses, **more}


def json_body(schema: str) -> dict[str, Any]:
    return {"required": True, "content": {JSON: {"schema": ref(schema)}}}


BAD = {"400": error_answer("The request is malformed.")}


TOO_LARGE = {"413": error_answer("The body is over max_body.")}


UNKEPT = {"503": error_answer("The daemon could not keep this in its state store, or is"
                              " stopping: nothing changed.")}


_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}


_NO_SERVICE = {"404": error_answer("No service has that name.")}


_RELAYED = {"default": {"description": "The instance's own answer."},
            **_NO_SERVICE, **TOO_LARGE,
            "502": error_answer("No instance is ready, or its answer is too large."),
            "504": error_answer("The instance did not answer in time.")}


#: Each operation of the ``/services`` routes, keyed by (method, OpenAPI path).
SERVICE_OPERATIONS: Mapping[tuple[str, str], dict[str, Any]] = {
    ("GET", "/services"): operation(
        "Every service, with its instances.",
        {"200": json_answer(ref("Services"), "The services.")}),
    ("POST", "/services"): operation(
        "Make a service: N instances of a module sharing one listening socket the daemon"
        " binds; or, for a module Slurm runs, N instances each on its own node's port,"
        " reached through the service's relay only.",
        {"201": json_answer(ref("Service"), "The new service (its instances starting)."),
         **BAD, "403": error_answer("An override the module does not allow, or more"
                                    " instances than max_instances."),
         "404": error_answer("The module is not allowed or not found."),
         "409": error_answer("The name is taken, another process holds the address, or"
                             " listen does not suit the module: required for one that runs"
                             " here, refused for one Slurm runs."),
         **TOO_LARGE, **UNKEPT},
        requestBody=json_body("NewService")),
    ("GET", "/services/{name}"): operation(
        "One service; with wait=ready (every instance ready, no rollout) or wait=rollout,"
        " once it is so (or timeout).",
        {"200": json_answer(ref("Service"), "The service."), **BAD,
         **_NO_SERVICE},
        parameters=[_NAME, {"name": "wait", "in": "query",
                            "schema": {"enum": list(SERVICE_WAITS)}},
                    {"name": "timeout", "in": "query",
                     "schema": {"type": "number", "minimum": 0, "maximum": 60}}]),
    ("PATCH", "/services/{name}"): operation(
        "Scale live: more instances are started, the newest drained first.",
        {"200": json_answer(ref("Service"), "The service, scaling."), **BAD,
         "403": error_answer("More instances than max_instances."), **_NO_SERVICE,
         "409": error_answer("A rollout runs."), **TOO_LARGE, **UNKEPT},
        parameters=[_NAME], requestBody=json_body("Scale")),
    ("DELETE", "/services/{name}"): operation(
        "Remove a service: its instances drained, then its socket closed; at once.",
        {"202": json_answer(ref("Service"), "The service as its removal begins."),
         **_NO_SERVICE, **UNKEPT},
        parameters=[_NAME]),
    ("POST", "/services/{name}/rollout"): operation(
        "Replace every instance a step at a time (surge, max_unavailable), gated on"
        " readiness, rolled back by itself if a new one fails; with module or config, to"
        " those.",
        {"202": json_answer(ref("Service"), "The service, its rollout running."), **BAD,
         "403": error_answer("An override the module does not allow."),
         "404": error_answer("No such service, or the module is not allowed."),
         "409": error_answer("A rollout runs already."), **TOO_LARGE},
        parameters=[_NAME],
        requestBody={"required": False,
                     "content": {JSON: {"schema": ref("NewRollout")}}}),
    ("*", "/services/{name}/proxy"): operation(
        "Relayed to a ready instance at / (as below).", _RELAYED, parameters=[_NAME]),
    ("*", "/services/{name}/proxy/{path}"): operation(
        "Relayed to the ready instance with the fewest relayed requests in flight, at"
        " /{path}; the answer is the instance's.",
        _RELAYED, parameters=[_NAME, {"name": "path", "in": "path", "required": True,
                                      "schema": {"type": "string"}}]),
}
