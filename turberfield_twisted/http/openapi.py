"""
The OpenAPI 3.2 description of the control API, served at ``GET /openapi.json``
(3.2 for ``itemSchema``: each event of ``GET /events`` is described).

Paths and methods come from the routers' own tables; what each
operation takes and answers comes from :data:`OPERATIONS`, keyed by method
and path, and the shapes from :data:`~.schemas.SCHEMAS`. What the relay
passes back is the worker's own answer, of any status and any content
type: it is described as such. :func:`document` refuses a route with no entry and an entry with
no route, so the description cannot drift from the routes (a test builds it
from the real apps, and schemathesis checks a live daemon against it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from turberfield_twisted import __version__
from turberfield_twisted.access.roles import Role
from turberfield_twisted.http.openapi_access import (
    ACCESS_OPERATIONS,
    ACCESS_SCHEMAS,
    SECURITY_SCHEMES,
)
from turberfield_twisted.http.openapi_logs import LOG_OPERATIONS
from turberfield_twisted.http.openapi_services import SERVICE_OPERATIONS, SERVICE_SCHEMAS
from turberfield_twisted.http.roles import JOB, PUBLIC, ROLES, Needed
from turberfield_twisted.http.schemas import JSON, SCHEMAS, SSE, ref
from turberfield_twisted.jobs.job import JobState

if TYPE_CHECKING:
    from turberfield_twisted.http.router import Router

__all__ = ["OPERATIONS", "SCHEMAS", "UndocumentedRoute", "document", "routes"]

_JSON = JSON


_TEXT = "text/plain"




class UndocumentedRoute(LookupError):
    """A route has no entry in :data:`OPERATIONS`, or an entry has no route."""


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(ref("Error"), description)


_GUID = {"name": "guid", "in": "path", "required": True, "schema": {"type": "string"}}


_DENIED = {"401": _error("No or a wrong bearer token.")}


_NO_JOB = {"404": _error("No job has that guid.")}


_BAD = {"400": _error("The request is malformed.")}


_TOO_LARGE = {"413": _error("The body is over max_body.")}


_UNKEPT = {"503": _error("The daemon could not keep this in its state store, or is stopping:"
                          " nothing changed.")}


def _op(summary: str, responses: dict[str, Any], **more: Any) -> dict[str, Any]:
    """An operation; its security comes from the role table (:func:`_secured`)."""
    return {"summary": summary, "responses": responses, **more}


def _secured(operation: dict[str, Any], needed: Needed) -> dict[str, Any]:
    """``operation`` with the security ``needed`` says, and the answers of a refusal."""
    if needed == PUBLIC:
        return {**operation, "security": []}
    if needed == JOB:
        return {**operation, "security": [{"job": []}],
                "responses": {**_DENIED, **operation["responses"]}}
    assert isinstance(needed, Role)
    responses = {**_DENIED, **operation["responses"],
                 "429": _error("Too many wrong tokens from this address: retry after"
                               " Retry-After seconds.")}
    below = [role.value for role in Role if not role.allows(needed)]
    if below:
        refused = _error(f"The token's role is below {needed.value} ({', '.join(below)});"
                         f" or it is limited to other modules or services.")
        if "403" in responses:
            refused["description"] = (responses["403"]["description"] + " Or: "
                                      + refused["description"])
        responses["403"] = refused
    return {**operation, "security": [{"token": [needed.value]}], "x-role": needed.value,
            "responses": responses}


#: Where a new job's guid leads (OpenAPI links: clients and testers follow them).
_JOB_LINKS = {name: {"operationId": operation, "parameters": {"guid": "$response.body#/guid"}}
              for name, operation in (("get", "get_jobs_guid"), ("stop", "delete_jobs_guid"),
                                      ("restart", "post_jobs_guid_restart"),
                                      ("logs", "get_jobs_guid_logs"),
                                      ("change", "patch_jobs_guid_config"))}


def _body(schema: str) -> dict[str, Any]:
    return {"required": True, "content": {_JSON: {"schema": ref(schema)}}}


#: Any answer at all: what a worker may say through the relay.
_ANY: dict[str, Any] = {"*/*": {"schema": {}}}


def _or_worker(description: str) -> dict[str, Any]:
    """A status the relay answers itself (JSON), and a worker may answer too (anything)."""
    return {"description": f"{description} Or the worker's own answer of this status.",
            "content": {_JSON: {"schema": ref("Error")}, **_ANY}}


#: What the relay answers: the worker's answer as it is, or its own errors.
_RELAY = {
    "default": {"description": "The worker's own answer, passed back as it is: any status,"
                               " any content type.", "content": _ANY},
    "400": _or_worker("The path holds . or .. segments, or is not plain ASCII."),
    "401": _or_worker("No or a wrong bearer token (the admin token)."),
    "404": _or_worker("No job has that guid."),
    "413": _or_worker("The body is over max_body."),
    "502": _or_worker("The job is not running, has not said where it listens, could not be"
                      " reached, or its answer is too large."),
    "504": _or_worker("The worker did not answer in time."),
}


#: Each operation of the control API, keyed by (method, OpenAPI path).
OPERATIONS: Mapping[tuple[str, str], dict[str, Any]] = {
    ("GET", "/health"): _op(
        "Liveness, and how many jobs have not ended.",
        {"200": _json(ref("Health"), "The daemon runs.")}),
    ("GET", "/"): _op(
        "A browser's way in: to the web dashboard at /ui/ (HTML, not part of this API).",
        {"302": {"description": "To /ui/.",
                 "headers": {"Location": {"schema": {"const": "/ui/"}}},
                 "content": {_TEXT: {"schema": {"type": "string"}}}}}),
    ("GET", "/openapi.json"): _op(
        "This description.", {"200": _json({"type": "object"}, "OpenAPI 3.2.")}),
    ("GET", "/metrics"): _op(
        "Prometheus text: jobs by module and state, transitions, restarts, hooks.",
        {"200": {"description": "The metrics.",
                 "content": {_TEXT: {"schema": {"type": "string"}}}},
         **_DENIED, "404": _error("Metrics are not enabled.")}),
    ("GET", "/events"): _op(
        "Every job event, and with logs=GUID that job's output, as Server-Sent Events;"
        " Last-Event-ID resumes.",
        {"200": {"description": "The stream (it does not end by itself): an open event,"
                                " then gap, state, worker and log events as they come.",
                 "content": {SSE: {"itemSchema": ref("StreamEvent")}}},
         **_BAD, **_DENIED, **_NO_JOB},
        parameters=[{"name": "logs", "in": "query", "schema": {"type": "string"},
                     "description": "A job's guid: its output lines too (404 if none)."},
                    {"name": "Last-Event-ID", "in": "header",
                     "description": "Resume after this id (RUN-N); empty: from now.",
                     "schema": {"type": "string",
                                "pattern": r"^([0-9a-f]{8}-[0-9]{1,18})?$"}},
                    {"name": "last_event_id", "in": "query",
                     "description": "As Last-Event-ID, for clients that can't set a header.",
                     "schema": {"type": "string",
                                "pattern": r"^([0-9a-f]{8}-[0-9]{1,18})?$"}}]),
    ("POST", "/reload"): _op(
        "Read the config files again and reconcile the declared jobs.",
        {"200": _json(ref("Reloaded"), "What started, stopped, restarted or stayed."),
         "400": _error("A config file is bad (file, line, key): nothing changed."), **_DENIED,
         "404": _error("This daemon has no config files to read again."),
         "503": _error("The daemon is stopping: nothing changed.")}),
    ("GET", "/modules"): _op(
        "The modules a launch may name, the keys each lets a launch override, their defaults.",
        {"200": _json(ref("Modules"), "By name."), **_DENIED}),
    ("GET", "/slurm/nodes"): _op(
        "The Slurm nodes that failed a job within node_failure_window or are excluded:"
        " for every job (until when, why) or for some jobs.",
        {"200": _json(ref("SlurmNodes"), "By name."), **_DENIED}),
    ("GET", "/jobs"): _op(
        "Every job, ended ones too.", {"200": _json(ref("Jobs"), "The jobs."), **_DENIED}),
    ("POST", "/jobs"): _op(
        "Launch a module as a job.",
        {"201": {**_json(ref("Job"), "The new job (waiting or starting)."),
                 "links": _JOB_LINKS}, **_BAD, **_DENIED,
         "403": _error("An override of a key the module does not allow."),
         "404": _error("The module is not allowed or not found."),
         "409": _error("The guid given is taken: a job has it, or it names a config section."),
         **_TOO_LARGE, "500": _error("The worker process could not be started."),
         "503": _error("No free port, the state store failed, or the daemon is stopping:"
                       " nothing changed.")},
        requestBody=_body("Launch")),
    ("GET", "/jobs/{guid}"): _op(
        "One job; with wait=STATE, once it is in that state or has ended (or timeout).",
        {"200": _json(ref("Job"), "The job."), **_BAD, **_DENIED, **_NO_JOB},
        parameters=[_GUID,
                    {"name": "wait", "in": "query",
                     "schema": {"enum": [state.value for state in JobState]}},
                    {"name": "timeout", "in": "query",
                     "schema": {"type": "number", "minimum": 0, "maximum": 60}}]),
    ("DELETE", "/jobs/{guid}"): _op(
        "Ask a job to stop (TERM, then KILL after stop_timeout); at once.",
        {"202": _json(ref("Job"), "The job as the stop begins."), **_DENIED, **_NO_JOB,
         **_UNKEPT},
        parameters=[_GUID]),
    ("POST", "/jobs/{guid}/restart"): _op(
        "Start a job again; a running one is stopped first, then started once it exited.",
        {"202": _json(ref("Job"), "The job, stopping or starting again."), **_DENIED,
         **_NO_JOB, "500": _error("The worker process could not be started."),
         "503": _error("No free port, the state store failed, or the daemon is stopping:"
                       " nothing changed.")},
        parameters=[_GUID]),
    ("PATCH", "/jobs/{guid}/config"): _op(
        "Change a job's overridable keys; a running job is sent its new config.",
        {"200": _json(ref("Changed"), "The job, changed."), **_BAD, **_DENIED,
         "403": _error("A key the module does not allow."), **_NO_JOB,
         "409": _error("The job did not get ready in time: nothing changed."), **_TOO_LARGE,
         "422": _error("The worker refused the change (its reason): nothing changed."),
         "502": _error("The worker could not be reached: nothing changed."), **_UNKEPT},
        parameters=[_GUID], requestBody=_body("Changes")),
    ("POST", "/jobs/{guid}/forget"): _op(
        "Forget an ended job (not a declared one): gone from the jobs and the state store.",
        {"200": _json(ref("Job"), "The job as it was."), **_DENIED, **_NO_JOB, **_UNKEPT,
         "409": _error("It has not ended, or a config file declares it.")}, parameters=[_GUID]),
    ("GET", "/config/{guid}"): _op(
        "A job's own config, less secrets (that job's token).",
        {"200": _json(ref("JobConfig"), "Its DEFAULT and its own section."), **_DENIED},
        parameters=[_GUID]),
    ("POST", "/jobs/{guid}/events"): _op(
        "An event from the job itself (that job's token).",
        {"202": _json(ref("Accepted"), "Passed on to observers and web-hooks."), **_BAD,
         **_DENIED, **_TOO_LARGE},
        parameters=[_GUID], requestBody=_body("WorkerEvent")),
    ("POST", "/jobs/{guid}/listening"): _op(
        "Where a job on a cluster node listens, from the job itself (that job's token).",
        {"202": _json(ref("Accepted"), "The daemon checks it there, then the job is ready."),
         **_BAD, **_DENIED,
         "409": _error("The job is not starting, runs on this host, or its launcher runs it"
                       " elsewhere (the step is not its, or the host not its node's)."),
         **_TOO_LARGE, "503": _error("Its launcher could not say where it runs.")},
        parameters=[_GUID], requestBody=_body("Listening")),
    ("GET", "/hooks"): _op(
        "The web-hook subscriptions (no secrets).",
        {"200": _json(ref("Hooks"), "Each with its delivery counts."), **_DENIED,
         "404": _error("Web-hooks are not enabled.")}),
    ("POST", "/hooks"): _op(
        "Subscribe a URL to job events (*, a state, worker:* or worker:NAME); the secret is"
        " shown this once.",
        {"201": _json(ref("NewHook"), "The subscription."),
         "200": _json(ref("Hook"), "The same URL and events again: the existing one."),
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
        "Relayed to the job's worker at / (as below).", _RELAY, parameters=[_GUID]),
    ("*", "/jobs/{guid}/proxy/{path}"): _op(
        "Relayed to the job's worker at /{path} (method, query, body, content type);"
        " the answer is the worker's, whatever its status and content type.", _RELAY,
        parameters=[_GUID, {"name": "path", "in": "path", "required": True,
                            "schema": {"type": "string"}}]),
    **ACCESS_OPERATIONS,
    **SERVICE_OPERATIONS,
    **LOG_OPERATIONS,
}


_CONVERTER = re.compile(r"<(?:[a-z]+:)?([A-Za-z_][A-Za-z0-9_]*)>")


#: Every method OpenAPI names: the relay passes each on.
_RELAYED = ("GET", "PUT", "POST", "DELETE", "OPTIONS", "HEAD", "PATCH", "TRACE")


def routes(app: Router, prefix: str = "") -> Iterable[tuple[str, str]]:
    """
    ``(method, OpenAPI path)`` of each route of ``app`` (``*`` for a route
    of any method), less HEAD and branch mounts.
    """
    rules = list(app.iter_rules())
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


def document(pairs: Iterable[tuple[str, str]], title: str = "turberfield-twisted proactor"
             ) -> dict[str, Any]:
    """
    The OpenAPI 3.2 document of the routes ``pairs`` (from :func:`routes`).
    Raise :class:`UndocumentedRoute` if a route has no operation or an
    operation no route.
    """
    found = set(pairs)
    missing = sorted(found - set(OPERATIONS))
    unrouted = sorted(set(OPERATIONS) - found)
    if missing or unrouted:
        raise UndocumentedRoute(f"undocumented routes: {missing}; no route for: {unrouted}")
    roleless = sorted(set(OPERATIONS) - set(ROLES))
    if roleless:
        raise UndocumentedRoute(f"operations without a role: {roleless}")
    paths: dict[str, dict[str, Any]] = {}
    for (method, path), operation in sorted(OPERATIONS.items()):
        methods = _RELAYED if method == "*" else (method,)
        secured = _secured(operation, ROLES[(method, path)])
        for one in methods:
            paths.setdefault(path, {})[one.lower()] = {
                **secured, "operationId": _operation_id(one, path)}
    return {
        "openapi": "3.2.0",
        "info": {"title": title, "version": __version__,
                 "description": "The control API of a turberfield-twisted daemon. Errors are"
                                " JSON {\"error\": \"...\"}."},
        "paths": paths,
        "components": {
            "schemas": {**SCHEMAS, **ACCESS_SCHEMAS, **SERVICE_SCHEMAS},
            "securitySchemes": dict(SECURITY_SCHEMES),
        },
    }


def _operation_id(method: str, path: str) -> str:
    words = re.sub(r"[^A-Za-z0-9]+", "_", path).strip("_") or "root"
    return f"{method.lower()}_{words}"
