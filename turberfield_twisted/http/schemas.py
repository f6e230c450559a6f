"""
The shapes the control API takes and answers, as JSON Schema (the
``components/schemas`` of its OpenAPI document, :mod:`.openapi`).

Where the API checks a value with a pattern, the schema states the same
pattern (taken from where the check is: :mod:`~turberfield_twisted.config.names`,
:mod:`~turberfield_twisted.hooks.rules`), so that a body the schema allows
is one the API takes: a config key, a session, a guid, an event name, a
hook's URL and events, where a worker says it listens.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from turberfield_twisted.config.names import EVENT_NAME, GUID, KEY, MAX_VALUE, SESSION, STEP
from turberfield_twisted.hooks.rules import (
    _MAX_EVENTS,
    _MAX_URL,
    EVERYTHING,
    SERVICE_PREFIX,
    WORKER_PREFIX,
)
from turberfield_twisted.jobs.job import JobState
from turberfield_twisted.services.model import SERVICE_EVENTS

__all__ = ["JSON", "SCHEMAS", "SSE", "ref"]

JSON = "application/json"


SSE = "text/event-stream"


def ref(name: str) -> dict[str, str]:
    """A reference to schema ``name`` of :data:`SCHEMAS`."""
    return {"$ref": f"#/components/schemas/{name}"}


_STRINGS = {"type": "object", "additionalProperties": {"type": "string"}}


_STATES = [state.value for state in JobState]


#: A per-job override: a key its module lists as overridable (403 if it does not), and a
#: value of one line (a number or a boolean is taken as its text).
_OVERRIDES = {
    "type": "object", "propertyNames": {"pattern": KEY.pattern},
    "additionalProperties": {"anyOf": [
        {"type": "string", "maxLength": MAX_VALUE, "pattern": "^[^\r\n]*$"},
        {"type": "number"}, {"type": "boolean"}]},
}


_OCTET = "(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"


_PORT = "(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}|0)"


#: A hook URL the API takes: http(s), an IPv4 address, localhost or [::1] (the allow list
#: decides, 403), a port, a path of printable characters; no credentials.
_HOOK_URL = (rf"^https?://(localhost|{_OCTET}(\.{_OCTET}){{3}}|\[::1\])(:{_PORT})?"
             r"(/[!-~]*)?$")


#: An IPv4 address a worker may say it listens on: not 0.0.0.0, not multicast.
_IPV4_HOST = rf"^(22[0-3]|2[01][0-9]|1[0-9]{{2}}|[1-9][0-9]?)(\.{_OCTET}){{3}}$"


_HOOK_EVENT = {"anyOf": [
    {"enum": [EVERYTHING, f"{WORKER_PREFIX}*", *_STATES, f"{SERVICE_PREFIX}*",
              *sorted(SERVICE_PREFIX + event for event in SERVICE_EVENTS)]},
    {"type": "string", "pattern": f"^{WORKER_PREFIX}{EVENT_NAME.core}$"},
]}


def _event_item(name: str, data: str, with_id: bool = True) -> dict[str, Any]:
    """One kind of Server-Sent Event of ``GET /events``: its name, and its data's schema."""
    item: dict[str, Any] = {
        "properties": {"event": {"const": name},
                       "data": {"contentMediaType": JSON, "contentSchema": ref(data)}}}
    if with_id:
        item["required"] = ["id"]
    return item


#: The shapes the API answers with and takes, as JSON Schema.
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
            "state": {"enum": _STATES},
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
            "host": {"type": ["string", "null"],
                     "description": "The address the daemon reaches it at, once known (a"
                                    " Slurm job's: its node's NodeAddr, as Slurm says)."},
            "node": {"type": ["string", "null"],
                     "description": "The Slurm node its step runs on, once Slurm said so."},
            "uptime": {"type": ["number", "null"], "description": "Seconds since its spawn."},
            "rss": {"type": ["integer", "null"], "description": "Its process group's RSS, bytes."},
            "cpu": {"type": ["number", "null"], "description": "Its group's CPU seconds."},
            "log_dropped": {"type": "integer", "description": "Lines of its output not"
                            " written to its log file (the disk full, or the writer behind)."},
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
                "properties": {"modules": {"type": "array", "items": ref("Module")}}},
    "SlurmNodes": {"type": "object", "required": ["nodes"], "properties": {"nodes": {
        "type": "array", "items": {
            "type": "object",
            "required": ["name", "excluded", "until", "reason", "failures", "excluded_for"],
            "properties": {
                "name": {"type": "string"},
                "excluded": {"type": "boolean",
                             "description": "Excluded for every job (too many failures)."},
                "until": {"type": ["number", "null"], "description": "Until when (epoch s)."},
                "reason": {"type": ["string", "null"]},
                "failures": {"type": "array", "items": {
                    "type": "object", "required": ["guid", "time", "reason"],
                    "properties": {"guid": {"type": "string"}, "time": {"type": "number"},
                                   "reason": {"type": "string"}}}},
                "excluded_for": {"type": "array", "items": {"type": "string"},
                                 "description": "The jobs it is excluded for (it failed them)."},
            }}}}},
    "Jobs": {"type": "object", "required": ["jobs"],
             "properties": {"jobs": {"type": "array", "items": ref("Job")}}},
    "Launch": {
        "type": "object", "required": ["module"], "additionalProperties": False,
        "examples": [{"module": "turberfield_twisted.demo.hello", "session": "s1",
                      "config": {"greeting": "hej"}}],
        "properties": {
            "module": {"type": "string", "minLength": 1,
                       "description": "A module with a section in the daemon's config."},
            "session": {"type": ["string", "null"], "pattern": SESSION.pattern,
                        "description": "At most 256 characters, no control characters nor $."},
            "config": {**_OVERRIDES, "type": ["object", "null"],
                       "description": "Overrides of keys the module's section lists as"
                                      " overridable (null: none)."},
            "guid": {"type": "string", "pattern": GUID.pattern,
                     "description": "Its guid (else one is made); 409 if a job has it or it"
                                    " names a section of the config."},
        },
    },
    "Logs": {"type": "object", "required": ["guid", "lines"], "properties": {
        "guid": {"type": "string"},
        "lines": {"type": "array", "items": ref("LogLine")}}},
    "LogLine": {"type": "object", "required": ["time", "stream", "line"],
                "properties": {"guid": {"type": "string"}, "time": {"type": "number"},
                               "stream": {"enum": ["stdout", "stderr"]},
                               "line": {"type": "string"}}},
    "Changed": {"allOf": [ref("Job"), {"type": "object", "required": ["kept"], "properties": {
        "kept": {"type": "boolean", "description": "Kept for the daemon's next start (false:"
                 " a [job:NAME] section of a config file declares the job)."},
        "note": {"type": "string", "description": "Why not, when not."}}}]},
    "Changes": {**_OVERRIDES, "description": "Overridable keys and their new values.",
                "examples": [{"greeting": "hej"}]},
    "JobConfig": {"type": "object", "required": ["guid", "default", "section"],
                  "properties": {"guid": {"type": "string"}, "default": _STRINGS,
                                 "section": _STRINGS}},
    "WorkerEvent": {"type": "object", "required": ["event"], "additionalProperties": False,
                    "properties": {"event": {"type": "string", "pattern": EVENT_NAME.pattern},
                                   "data": {}}},
    "Reloaded": {"type": "object",
                 "required": ["started", "stopped", "restarted", "unchanged", "restart_needed"],
                 "properties": {**{key: {"type": "array", "items": {"type": "string"}} for key in
                                   ("started", "stopped", "restarted", "unchanged",
                                    "restart_needed", "warnings")},
                                "services": {"type": "object", "description": "The services"
                                             " made, removed, scaled, rolled out, unchanged.",
                                             "additionalProperties": {
                                                 "type": "array",
                                                 "items": {"type": "string"}}}}},
    "Listening": {"type": "object", "required": ["host", "port"],
                  "additionalProperties": False,
                  "properties": {
                      "host": {"description": "The IP address it is reached at: not 0.0.0.0"
                                              " or ::, not multicast.",
                               "anyOf": [{"type": "string", "pattern": _IPV4_HOST},
                                         {"type": "string", "format": "ipv6",
                                          "not": {"anyOf": [
                                              {"pattern": "^[0:]+$"},
                                              {"pattern": "^[fF]{2}[0-9a-fA-F]{2}:"}]}}]},
                      "port": {"type": "integer", "minimum": 1, "maximum": 65535,
                               "description": "The port it was given (409 if another)."},
                      "step": {"type": ["string", "null"],
                               "pattern": STEP.pattern,
                               "description": "Its Slurm job step, JOBID.STEP."}}},
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
              "properties": {"hooks": {"type": "array", "items": ref("Hook")}}},
    "Subscribe": {"type": "object", "required": ["url"], "additionalProperties": False,
                  "examples": [{"url": "http://127.0.0.1:9/hook",
                                "events": ["ready", "worker:notified"]}],
                  "properties": {
                      "url": {"type": "string", "maxLength": _MAX_URL, "pattern": _HOOK_URL,
                              "description": "Where deliveries go: its address must be in"
                                             " hook_allow (403 if not)."},
                      "events": {"type": "array", "minItems": 1, "maxItems": _MAX_EVENTS,
                                 "items": _HOOK_EVENT,
                                 "description": "*, a job state, worker:* or worker:NAME;"
                                                " left out: every event."}}},
    "JobEvent": {
        "type": "object", "required": ["kind", "event", "guid", "module", "time"],
        "description": "A job entered a state (kind state), or its worker posted an event"
                       " (kind worker): as web-hooks and the event stream send it.",
        "properties": {"kind": {"enum": ["state", "worker"]}, "event": {"type": "string"},
                       "guid": {"type": "string"}, "module": {"type": "string"},
                       "time": {"type": "number"}, "port": {"type": "integer"},
                       "pid": {"type": ["integer", "null"]}, "restarts": {"type": "integer"},
                       "last_error": {"type": ["string", "null"]}, "data": {},
                       "service": {"type": "string",
                                   "description": "The service it is an instance of."}}},
    "ServiceEvent": {
        "type": "object", "required": ["kind", "event", "service", "module", "time"],
        "description": "Something happened to a service (made, scaled, removed, a rollout"
                       " started, done or failed): as web-hooks and the event stream send it.",
        "properties": {"kind": {"const": "service"},
                       "event": {"enum": sorted(SERVICE_EVENTS)},
                       "service": {"type": "string"}, "module": {"type": "string"},
                       "time": {"type": "number"}, "data": {}}},
    "StreamOpen": {"type": "object", "required": ["last"],
                   "properties": {"last": {"type": "string", "description": "The id of the"
                                           " last entry so far (RUN-N)."}}},
    "StreamGap": {"type": "object", "required": ["after"],
                  "properties": {"after": {"type": "string", "description": "The id resumed"
                                           " after: entries since then are lost."}}},
    "StreamEvent": {
        "type": "object", "required": ["event", "data"],
        "description": "One Server-Sent Event of GET /events: open (first), gap, state and"
                       " worker (a JobEvent), log (a LogLine), audit (an AuditRecord, to"
                       " admins only); its data is one line of JSON.",
        "properties": {"event": {"enum": ["open", "gap", "state", "worker", "log", "audit"]},
                       "data": {"type": "string"},
                       "id": {"type": "string", "pattern": r"^[0-9a-f]{8}-[0-9]{1,18}$"}},
        "oneOf": [_event_item("open", "StreamOpen", with_id=False),
                  _event_item("gap", "StreamGap", with_id=False),
                  _event_item("state", "JobEvent"), _event_item("worker", "JobEvent"),
                  _event_item("service", "ServiceEvent"), _event_item("log", "LogLine"),
                  _event_item("audit", "AuditRecord")]},
}
