"""
The OpenAPI description of the logs routes (:class:`~.logs_api.LogsAPI`):
``GET /jobs/{guid}/logs`` and ``POST /logs/reopen``, which
:func:`~turberfield_twisted.http.openapi.document` takes beside the rest;
the role each needs is :data:`~.roles.ROLES`'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from turberfield_twisted.http.logs_api import MAX_SINCE
from turberfield_twisted.http.openapi_services import BAD, error_answer, json_answer, operation
from turberfield_twisted.http.schemas import ref

__all__ = ["LOG_OPERATIONS"]

_GUID = {"name": "guid", "in": "path", "required": True, "schema": {"type": "string"}}


#: Each operation of the logs routes, keyed by (method, OpenAPI path).
LOG_OPERATIONS: Mapping[tuple[str, str], dict[str, Any]] = {
    ("GET", "/jobs/{guid}/logs"): operation(
        "The job's last output lines: from its log files (so they outlast a daemon restart),"
        " or from the live tail when logs on disk are off.",
        {"200": json_answer(ref("Logs"), "Oldest first."), **BAD,
         "404": error_answer("No job has that guid.")},
        parameters=[_GUID,
                    {"name": "lines", "in": "query",
                     "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
                    {"name": "since", "in": "query",
                     "schema": {"type": "number", "minimum": 0, "maximum": MAX_SINCE},
                     "description": "Only lines written then or later, in seconds since"
                                    " the epoch (the CLI's --since takes 5m, ISO 8601 ...)."}]),
    ("POST", "/logs/reopen"): operation(
        "Reopen every job's log file, as SIGUSR1 does (after an outside tool moved them).",
        {"200": json_answer({"type": "object", "required": ["reopened"],
                             "properties": {"reopened": {"type": "integer", "minimum": 0}}},
                            "How many files were reopened."),
         "404": error_answer("Logs on disk are off (log_dir = off).")}),
}
