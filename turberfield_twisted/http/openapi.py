"""
The OpenAPI 3.1 description of the control API, served at ``GET /openapi.json``.

Paths and methods come from the Klein apps' own routing tables; what each
operation takes and answers comes from :data:`OPERATIONS`, keyed by method
and path. :func:`document` refuses a route with no entry and an entry with
no route, so the description cannot drift from the routes (a test builds it
from the real apps, and schemathesis checks a live daemon against it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from klein import Klein

from turberfield_twisted import __version__
from turberfield_twisted.config.names import EVENT_NAME, GUID
from turberfield_twisted.jobs.job import JobState

__all__ = ["OPERATIONS", "SCHEMAS", "UndocumentedRoute", "document", "routes"]

_JSON = "application/json"


_TEXT_EVENTS = "text/event-stream"


_TEXT = "text/plain"


_ADMIN: list[dict[str, list[str]]] = [{"admin": []}]


_JOB_TOKEN: list[dict[str, list[str]]] = [{"job": []}]


class UndocumentedRoute(LookupError):
    """A route has no entry in :data:`OPERATIONS`, or an entry has no route."""


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


_STRINGS = {"type": "object", "additionalProperties": {"type": "string"}}


#: The shapes the API answers with, as JSON Schema.
SCHEMAS: Mapping[str, Any] = {
    "Error": {"type": "object", "required": ["error"],
              "properties": {"error": {"type": "string"}}},
    "Health": {"type": "object", "required": ["status", "jobs"],
               "properties": {"status": {"const": "ok"}, "jobs": {"type": "integer"}}},
    "Job": {
        "type": "object",
        "required": ["guid", "module", "port", "session", "state", "pid", "started",
                     "exit_code", "exit_signal", "restarts", "last_error", "config"],
        "properties": {
            "guid": {"type": "string"},
            "module": {"type": "string"},
            "port": {"type": "integer"},
            "session": {"type": ["string", "null"]},
            "state": {"enum": [state.value for state in JobState]},
            "pid": {"type": ["integer", "null"]},
            "started": {"type": ["number", "null"]},
            "exit_code": {"type": ["integer", "null"]},
            "exit_signal": {"type": ["integer", "null"]},
            "restarts": {"type": "integer"},
            "last_error": {"type": ["string", "null"]},
            "config": _STRINGS,
            "wanted": {"enum": ["running", "stopped"]},
            "declared": {"type": "boolean"},
            "requires": {"type": "array", "items": {"type": "string"}},
            "service": {"type": ["string", "null"],
                        "description": "The service it is an instance of, if one."},
            "uptime": {"type": ["number", "null"], "description": "Seconds since its spawn."},
            "rss": {"type": ["integer", "null"], "description": "Its process group's RSS, bytes."},
            "cpu": {"type": ["number", "null"], "description": "Its group's CPU seconds."},
        },
    },
    "Module": {"type": "object", "required": ["name", "overridable", "defaults", "launcher",
                                              "warm"],
               "properties": {"name": {"type": "string"},
                              "overridable": {"type": "array", "items": {"type": "string"}},
                              "defaults": {**_STRINGS, "description": "The overridable keys'"
                                           " values in the module's section (no secrets)."},
                              "launcher": {"enum": ["local", "slurm"]},
                              "warm": {"type": "boolean"}}},
    "Modules": {"type": "object", "required": ["modules"],
                "properties": {"modules": {"type": "array", "items": _ref("Module")}}},
    "Jobs": {"type": "object", "required": ["jobs"],
             "properties": {"jobs": {"type": "array", "items": _ref("Job")}}},
    "Launch": {
        "type": "object", "required": ["module"], "additionalProperties": False,
        "examples": [{"module": "turberfield_twisted.demo.hello", "session": "s1",
                      "config": {"greeting": "hej"}}],
        "properties": {
            "module": {"type": "string", "minLength": 1,
                       "description": "A module with a section in the daemon's config."},
            "session": {"type": ["string", "null"], "maxLength": 256},
            "config": {"type": "object", "description": "Overrides of keys the module's"
                       " section lists as overridable.",
                       "additionalProperties": {"type": ["string", "number", "boolean"]}},
            "guid": {"type": "string", "pattern": GUID.pattern},
        },
    },
    "Logs": {"type": "object", "required": ["guid", "lines"], "properties": {
        "guid": {"type": "string"},
        "lines": {"type": "array", "items": {
            "type": "object", "required": ["time", "stream", "line"],
            "properties": {"time": {"type": "number"},
                           "stream": {"enum": ["stdout", "stderr"]},
                           "line": {"type": "string"}}}}}},
    "Changed": {"allOf": [_ref("Job"), {"type": "object", "required": ["kept"], "properties": {
        "kept": {"type": "boolean", "description": "Kept for the daemon's next start (false:"
                 " a [job:NAME] section of a config file declares the job)."},
        "note": {"type": "string", "description": "Why not, when not."}}}]},
    "Changes": {"type": "object", "description": "Overridable keys and their new values.",
                "examples": [{"greeting": "hej"}],
                "additionalProperties": {"type": ["string", "number", "boolean"]}},
    "JobConfig": {"type": "object", "required": ["guid", "default", "section"],
                  "properties": {"guid": {"type": "string"}, "default": _STRINGS,
                                 "section": _STRINGS}},
    "WorkerEvent": {"type": "object", "required": ["event"], "additionalProperties": False,
                    "properties": {"event": {"type": "string", "pattern": EVENT_NAME.pattern},
                                   "data": {}}},
    "Reloaded": {"type": "object",
                 "required": ["started", "stopped", "restarted", "unchanged", "restart_needed"],
                 "properties": {key: {"type": "array", "items": {"type": "string"}} for key in
                                ("started", "stopped", "restarted", "unchanged",
                                 "restart_needed", "warnings")}},
    "Listening": {"type": "object", "required": ["host", "port"],
                  "additionalProperties": False,
                  "properties": {"host": {"type": "string"},
                                 "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                                 "step": {"type": ["string", "null"]}}},
    "Accepted": {"type": "object", "required": ["accepted"],
                 "properties": {"accepted": {"const": True}}},
    "Hook": {"type": "object", "required": ["id", "url", "events"], "properties": {
        "id": {"type": "string"}, "url": {"type": "string"},
        "events": {"type": "array", "items": {"type": "string"}},
        "queued": {"type": "integer"}, "delivered": {"type": "integer"},
        "dropped": {"type": "integer"}, "failed_attempts": {"type": "integer"}}},
    "NewHook": {"type": "object", "required": ["id", "url", "events", "secret"],
                "properties": {"id": {"type": "string"}, "url": {"type": "string"},
                               "events": {"type": "array", "items": {"type": "string"}},
                               "secret": {"type": "string"}}},
    "Hooks": {"type": "object", "required": ["hooks"],
              "properties": {"hooks": {"type": "array", "items": _ref("Hook")}}},
    "Subscribe": {"type": "object", "required": ["url"], "additionalProperties": False,
                  "examples": [{"url": "http://127.0.0.1:9/hook",
                                "events": ["ready", "worker:notified"]}],
                  "properties": {"url": {"type": "string", "minLength": 1},
                                 "events": {"type": "array", "minItems": 1,
                                            "items": {"type": "string"}}}},
}


_GUID = {"name": "guid", "in": "path", "required": True, "schema": {"type": "string"}}


_DENIED = {"401": _error("No or a wrong bearer token.")}


_NO_JOB = {"404": _error("No job has that guid.")}


_BAD = {"400": _error("The request is malformed.")}


_TOO_LARGE = {"413": _error("The body is over max_body.")}


_UNKEPT = {"503": _error("The daemon could not keep this in its state store, or is stopping:"
                          " nothing changed.")}


def _op(summary: str, responses: dict[str, Any], security: list[Any] | None = None,
        **more: Any) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": summary, "responses": responses}
    operation["security"] = _ADMIN if security is None else security
    operation.update(more)
    return operation


#: Where a new job's guid leads (OpenAPI links: clients and testers follow them).
_JOB_LINKS = {name: {"operationId": operation, "parameters": {"guid": "$response.body#/guid"}}
              for name, operation in (("get", "get_jobs_guid"), ("stop", "delete_jobs_guid"),
                                      ("restart", "post_jobs_guid_restart"),
                                      ("logs", "get_jobs_guid_logs"),
                                      ("change", "patch_jobs_guid_config"))}


def _body(schema: str) -> dict[str, Any]:
    return {"required": True, "content": {_JSON: {"schema": _ref(schema)}}}


#: Each operation of the control API, keyed by (method, OpenAPI path).
OPERATIONS: Mapping[tuple[str, str], dict[str, Any]] = {
    ("GET", "/health"): _op(
        "Liveness, and how many jobs have not ended.",
        {"200": _json(_ref("Health"), "The daemon runs.")}, security=[]),
    ("GET", "/"): _op(
        "A browser's way in: to the web dashboard at /ui/ (HTML, not part of this API).",
        {"302": {"description": "To /ui/.",
                 "headers": {"Location": {"schema": {"const": "/ui/"}}},
                 "content": {_TEXT: {"schema": {"type": "string"}}}}}, security=[]),
    ("GET", "/openapi.json"): _op(
        "This description.", {"200": _json({"type": "object"}, "OpenAPI 3.1.")}, security=[]),
    ("GET", "/metrics"): _op(
        "Prometheus text: jobs by module and state, transitions, restarts, hooks.",
        {"200": {"description": "The metrics.",
                 "content": {_TEXT: {"schema": {"type": "string"}}}},
         **_DENIED, "404": _error("Metrics are not enabled.")}),
    ("GET", "/events"): _op(
        "Every job event, and with logs=GUID that job's output, as Server-Sent Events;"
        " Last-Event-ID resumes.",
        {"200": {"description": "The stream (it does not end by itself).",
                 "content": {_TEXT_EVENTS: {"schema": {"type": "string"}}}},
         **_BAD, **_DENIED, **_NO_JOB},
        parameters=[{"name": "logs", "in": "query", "schema": {"type": "string"}},
                    {"name": "Last-Event-ID", "in": "header",
                     "schema": {"type": "string", "pattern": r"^[0-9a-f]{8}-[0-9]{1,18}$"}}]),
    ("POST", "/reload"): _op(
        "Read the config files again and reconcile the declared jobs.",
        {"200": _json(_ref("Reloaded"), "What started, stopped, restarted or stayed."),
         "400": _error("A config file is bad (file, line, key): nothing changed."), **_DENIED,
         "404": _error("This daemon has no config files to read again."),
         "503": _error("The daemon is stopping: nothing changed.")}),
    ("GET", "/modules"): _op(
        "The modules a launch may name, the keys each lets a launch override, their defaults.",
        {"200": _json(_ref("Modules"), "By name."), **_DENIED}),
    ("GET", "/jobs"): _op(
        "Every job, ended ones too.", {"200": _json(_ref("Jobs"), "The jobs."), **_DENIED}),
    ("POST", "/jobs"): _op(
        "Launch a module as a job.",
        {"201": {**_json(_ref("Job"), "The new job (waiting or starting)."),
                 "links": _JOB_LINKS}, **_BAD, **_DENIED,
         "403": _error("An override of a key the module does not allow."),
         "404": _error("The module is not allowed or not found."), **_TOO_LARGE,
         "500": _error("The worker process could not be started."),
         "503": _error("No free port, the state store failed, or the daemon is stopping:"
                       " nothing changed.")},
        requestBody=_body("Launch")),
    ("GET", "/jobs/{guid}"): _op(
        "One job; with wait=STATE, once it is in that state or has ended (or timeout).",
        {"200": _json(_ref("Job"), "The job."), **_BAD, **_DENIED, **_NO_JOB},
        parameters=[_GUID,
                    {"name": "wait", "in": "query",
                     "schema": {"enum": [state.value for state in JobState]}},
                    {"name": "timeout", "in": "query",
                     "schema": {"type": "number", "minimum": 0, "maximum": 60}}]),
    ("DELETE", "/jobs/{guid}"): _op(
        "Ask a job to stop (TERM, then KILL after stop_timeout); at once.",
        {"202": _json(_ref("Job"), "The job as the stop begins."), **_DENIED, **_NO_JOB,
         **_UNKEPT},
        parameters=[_GUID]),
    ("POST", "/jobs/{guid}/restart"): _op(
        "Start a job again; a running one is stopped first, then started once it exited.",
        {"202": _json(_ref("Job"), "The job, stopping or starting again."), **_DENIED,
         **_NO_JOB, "500": _error("The worker process could not be started."),
         "503": _error("No free port, the state store failed, or the daemon is stopping:"
                       " nothing changed.")},
        parameters=[_GUID]),
    ("GET", "/jobs/{guid}/logs"): _op(
        "The job's recent output lines.",
        {"200": _json(_ref("Logs"), "Oldest first."), **_BAD, **_DENIED, **_NO_JOB},
        parameters=[_GUID, {"name": "lines", "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": 1000}}]),
    ("PATCH", "/jobs/{guid}/config"): _op(
        "Change a job's overridable keys; a running job is sent its new config.",
        {"200": _json(_ref("Changed"), "The job, changed."), **_BAD, **_DENIED,
         "403": _error("A key the module does not allow."), **_NO_JOB,
         "409": _error("The job did not get ready in time: nothing changed."), **_TOO_LARGE,
         "422": _error("The worker refused the change (its reason): nothing changed."),
         "502": _error("The worker could not be reached: nothing changed."), **_UNKEPT},
        parameters=[_GUID], requestBody=_body("Changes")),
    ("POST", "/jobs/{guid}/forget"): _op(
        "Forget an ended job (not a declared one): gone from the jobs and the state store.",
        {"200": _json(_ref("Job"), "The job as it was."), **_DENIED, **_NO_JOB, **_UNKEPT,
         "409": _error("It has not ended, or a config file declares it.")}, parameters=[_GUID]),
    ("GET", "/config/{guid}"): _op(
        "A job's own config, less secrets (that job's token).",
        {"200": _json(_ref("JobConfig"), "Its DEFAULT and its own section."), **_DENIED},
        security=_JOB_TOKEN, parameters=[_GUID]),
    ("POST", "/jobs/{guid}/events"): _op(
        "An event from the job itself (that job's token).",
        {"202": _json(_ref("Accepted"), "Passed on to observers and web-hooks."), **_BAD,
         **_DENIED, **_TOO_LARGE},
        security=_JOB_TOKEN, parameters=[_GUID], requestBody=_body("WorkerEvent")),
    ("POST", "/jobs/{guid}/listening"): _op(
        "Where a job on a cluster node listens, from the job itself (that job's token).",
        {"202": _json(_ref("Accepted"), "The daemon checks it there, then the job is ready."),
         **_BAD, **_DENIED, "409": _error("The job is not starting, or runs on this host."),
         **_TOO_LARGE},
        security=_JOB_TOKEN, parameters=[_GUID], requestBody=_body("Listening")),
    ("GET", "/hooks"): _op(
        "The web-hook subscriptions (no secrets).",
        {"200": _json(_ref("Hooks"), "Each with its delivery counts."), **_DENIED,
         "404": _error("Web-hooks are not enabled.")}),
    ("POST", "/hooks"): _op(
        "Subscribe a URL to job events (*, a state, worker:* or worker:NAME); the secret is"
        " shown this once.",
        {"201": _json(_ref("NewHook"), "The subscription."),
         "200": _json(_ref("Hook"), "The same URL and events again: the existing one."),
         **_BAD, **_DENIED, "403": _error("The URL's address is outside hook_allow."),
         "404": _error("Web-hooks are not enabled."), **_TOO_LARGE, **_UNKEPT},
        requestBody=_body("Subscribe")),
    ("DELETE", "/hooks/{hook_id}"): _op(
        "Drop a subscription.",
        {"204": {"description": "Dropped."}, **_DENIED, "404": _error("No such hook."),
         **_UNKEPT},
        parameters=[{"name": "hook_id", "in": "path", "required": True,
                     "schema": {"type": "string"}}]),
    ("*", "/jobs/{guid}/proxy"): _op(
        "Relayed to the job's worker at / (as below).",
        {"default": {"description": "The worker's own answer."},
         "404": _error("No job has that guid."), **_DENIED, **_TOO_LARGE,
         "502": _error("The worker is down, or its answer too large."),
         "504": _error("The worker did not answer in time.")},
        parameters=[_GUID]),
    ("*", "/jobs/{guid}/proxy/{path}"): _op(
        "Relayed to the job's worker at /{path} (method, query, body, content type);"
        " the answer is the worker's.",
        {"default": {"description": "The worker's own answer."},
         "404": _error("No job has that guid."), **_DENIED, **_TOO_LARGE,
         "502": _error("The worker is down, or its answer too large."),
         "504": _error("The worker did not answer in time.")},
        parameters=[_GUID, {"name": "path", "in": "path", "required": True,
                            "schema": {"type": "string"}}]),
}


_CONVERTER = re.compile(r"<(?:[a-z]+:)?([A-Za-z_][A-Za-z0-9_]*)>")


_RELAYED = ("GET", "POST", "PUT", "PATCH", "DELETE")


def routes(app: Klein, prefix: str = "") -> Iterable[tuple[str, str]]:
    """
    ``(method, OpenAPI path)`` of each route of ``app`` (``*`` for a route
    of any method), less HEAD and branch mounts.
    """
    rules = list(app.url_map.iter_rules())
    mounts = {rule.endpoint.removesuffix("_branch") for rule in rules
              if rule.endpoint.endswith("_branch")}
    for rule in rules:
        if rule.endpoint in mounts or rule.endpoint.endswith("_branch"):
            continue  # a branch mount: its app is described by its own routes
        path = prefix + _CONVERTER.sub(r"{\1}", rule.rule)
        path = path[:-1] if path.endswith("/") and path != "/" else path
        for method in sorted(rule.methods or {"*"}):
            if method not in ("HEAD", "OPTIONS"):
                yield method, path


def document(pairs: Iterable[tuple[str, str]], title: str = "turberfield-twisted proactor",
             operations: Mapping[tuple[str, str], dict[str, Any]] = OPERATIONS,
             schemas: Mapping[str, Any] = SCHEMAS) -> dict[str, Any]:
    """
    The OpenAPI 3.1 document of the routes ``pairs`` (from :func:`routes`),
    each described in ``operations`` (the shapes they name in ``schemas``).
    Raise :class:`UndocumentedRoute` if a route has no operation or an
    operation no route.
    """
    found = set(pairs)
    missing = sorted(found - set(operations))
    unrouted = sorted(set(operations) - found)
    if missing or unrouted:
        raise UndocumentedRoute(f"undocumented routes: {missing}; no route for: {unrouted}")
    paths: dict[str, dict[str, Any]] = {}
    for (method, path), operation in sorted(operations.items()):
        methods = _RELAYED if method == "*" else (method,)
        for one in methods:
            paths.setdefault(path, {})[one.lower()] = {
                **operation, "operationId": _operation_id(one, path)}
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": __version__,
                 "description": "The control API of a turberfield-twisted daemon. Errors are"
                                " JSON {\"error\": \"...\"}."},
        "paths": paths,
        "components": {
            "schemas": dict(schemas),
            "securitySchemes": {
                "admin": {"type": "http", "scheme": "bearer",
                          "description": "The admin token (state dir admin.token)."},
                "job": {"type": "http", "scheme": "bearer",
                        "description": "A job's own token (on its stdin)."},
            },
        },
    }


#: The builders of operations, for the descriptions kept beside this module
#: (:mod:`.openapi_services`): a schema's reference, a JSON answer, an error
#: answer, an operation (admin token by default), a JSON request body.
ref, json_answer, error_answer, operation, json_body = _ref, _json, _error, _op, _body

#: The answers many operations share: 401, 400, 413, 503 (the store).
DENIED, BAD, TOO_LARGE, UNKEPT = _DENIED, _BAD, _TOO_LARGE, _UNKEPT


def _operation_id(method: str, path: str) -> str:
    words = re.sub(r"[^A-Za-z0-9]+", "_", path).strip("_") or "root"
    return f"{method.lower()}_{words}"
