"""
What a control API request may say: its body and query arguments, read and
checked before any job is touched.

Each reader answers the values a route needs, or raises
:class:`~turberfield_twisted.errors.Invalid` (400) with a message that
names the argument and what it must be.
"""

from __future__ import annotations

from typing import Any

from twisted.web.iweb import IRequest

from turberfield_twisted.config.names import EVENT_NAME, SESSION
from turberfield_twisted.errors import Invalid
from turberfield_twisted.http.web import query_arg, read_object
from turberfield_twisted.jobs.job import JobState

__all__ = ["MAX_WAIT", "event_args", "launch_args", "lines_arg", "wait_args"]

#: The longest ``GET /jobs/{guid}?wait=`` may wait, in seconds.
MAX_WAIT = 60.0


_LAUNCH_KEYS = frozenset({"module", "session", "config", "guid"})


_EVENT_KEYS = frozenset({"event", "data"})


def launch_args(request: IRequest, max_body: int) -> dict[str, Any]:
    """
    ``POST /jobs``: ``{"module", "session"?, "config"?, "guid"?}``, checked.
    ``session`` and ``config`` may be null (none); ``guid``, if given, may not.
    """
    body = read_object(request, max_body, _LAUNCH_KEYS)
    if "guid" in body and body["guid"] is None:
        raise Invalid("guid may be left out (one is made), but not null")
    module, session = body.get("module"), body.get("session")
    config, guid = body.get("config"), body.get("guid")
    if not isinstance(module, str) or not module:
        raise Invalid("module must be a non-empty string")
    if session is not None and not SESSION.accepts(session):
        raise Invalid("session must be null or a string of at most 256 characters,"
                      " without control characters or '$'")
    if config is not None and not isinstance(config, dict):
        raise Invalid("config must be an object of key: value")
    if guid is not None and not isinstance(guid, str):
        raise Invalid("guid must be a string")
    return {"module": module, "session": session, "config": config, "guid": guid}


def wait_args(request: IRequest) -> tuple[str, float] | None:
    """``?wait=<state>&timeout=<0..60>`` (default 10 s), or None if no wait was asked."""
    wanted = query_arg(request, b"wait")
    if wanted is None:
        return None
    if wanted not in set(JobState):
        raise Invalid(f"wait must be one of: {', '.join(JobState)}")
    given = query_arg(request, b"timeout")
    try:
        timeout = 10.0 if given is None else float(given)
    except ValueError:
        timeout = -1.0
    if not 0 <= timeout <= MAX_WAIT:
        raise Invalid(f"timeout must be a number of seconds from 0 to {MAX_WAIT:g}")
    return wanted, timeout


def lines_arg(request: IRequest) -> int:
    """``?lines=`` of ``GET /jobs/{guid}/logs``: 1..1000, default 100."""
    given = query_arg(request, b"lines")
    try:
        count = 100 if given is None else int(given)
    except ValueError:
        count = 0
    if not 1 <= count <= 1000:
        raise Invalid("lines must be a whole number from 1 to 1000")
    return count


def event_args(request: IRequest, max_body: int) -> tuple[str, Any]:
    """``POST /jobs/{guid}/events``: ``{"event": name, "data"?: any}``, checked."""
    body = read_object(request, max_body, _EVENT_KEYS)
    event = body.get("event")
    if not EVENT_NAME.accepts(event):
        raise Invalid("event must be a short name (letters, digits, _ . : -)")
    return event, body.get("data")
