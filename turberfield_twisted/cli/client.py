"""
HTTP clients of the daemon's side: :class:`ControlClient` drives the
initiator's control API and :func:`push_config` hands a running worker its
new config.

A worker's own client, :class:`~.parent.ParentClient`, and what every
client shares (:class:`~.parent.ApiError`, :class:`~.parent.TransportError`,
:func:`~.parent.make_http`, :func:`~.parent.error_message`) live in
:mod:`turberfield_twisted.worker.parent`, which the worker runtime imports; they
are importable from here too.

Each takes a treq-like ``http`` object (``make_http`` builds one; tests pass
``StubTreq``) and the reactor; every call is bounded by ``timeout``.
Nothing here imports the reactor, and no token is ever logged or put in an
error message.
"""

from __future__ import annotations

import json as _json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure

from turberfield_twisted.contract import bearer_header
from turberfield_twisted.errors import ApiError, TransportError
from turberfield_twisted.worker.parent import JsonClient, error_message

__all__ = ["ControlClient", "ServerEvent"]

_PCHAR = "-._~!$&'()*+,;=:@"


#: How much longer than the daemon's own wait a waiting request may take.
WAIT_MARGIN = 5.0


def _quote(part: str) -> str:
    return quote(part, safe="")


@attrs.frozen
class ServerEvent:
    """One Server-Sent Event: its ``id`` (or None), ``event`` name and JSON ``data``."""

    id: str | None
    event: str
    data: Any


class _EventReader(Protocol):
    """Parse a ``text/event-stream`` body, calling ``on_event`` per event; ``done`` at its end."""

    def __init__(self, on_event: Callable[[ServerEvent], None], max_line: int = 1 << 20):
        self._on_event = on_event
        self._max_line = max_line
        self._buffer = b""
        self._fields: dict[bytes, bytes] = {}
        self.done: Deferred[None] = Deferred(lambda _: self._abort())

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.stopProducing()  # type: ignore[attr-defined]

    def dataReceived(self, data: bytes) -> None:
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        if len(self._buffer) > self._max_line:
            self._abort()
        for line in lines:
            self._line(line.rstrip(b"\r"))

    def _line(self, line: bytes) -> None:
        if not line:
            fields, self._fields = self._fields, {}
            if b"data" in fields:
                try:
                    data = _json.loads(fields[b"data"])
                except ValueError:
                    data = fields[b"data"].decode("utf-8", "replace")
                event_id = fields.get(b"id")
                self._on_event(ServerEvent(event_id.decode("ascii", "replace") if event_id
                                           else None,
                                           fields.get(b"event", b"message").decode("ascii"),
                                           data))
            return
        if line.startswith(b":"):
            return  # a comment: keepalive
        name, _, value = line.partition(b":")
        value = value[1:] if value.startswith(b" ") else value
        self._fields[name] = (self._fields[name] + b"\n" + value
                              if name == b"data" and name in self._fields else value)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if not self.done.called:
            self.done.callback(None)


class ControlClient(JsonClient):
    """
    The control API of an initiator at ``url`` (e.g. ``http://127.0.0.1:8080``),
    called with the admin ``token``. Errors are :class:`ApiError` (the API
    said no) or :class:`TransportError` (no answer).
    """

    async def health(self) -> dict[str, Any]:
        """``{"status": "ok", "jobs": n}``; needs no token."""
        return await self._json("GET", "/health", auth=False)

    async def jobs(self) -> list[dict[str, Any]]:
        """Every job the initiator knows."""
        return (await self._json("GET", "/jobs"))["jobs"]

    async def launch(
        self, module: str, session: str | None = None, config: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Launch ``module``; the new job."""
        body: dict[str, Any] = {"module": module}
        if session is not None:
            body["session"] = session
        if config:
            body["config"] = config
        return await self._json("POST", "/jobs", json=body)

    async def job(self, guid: str) -> dict[str, Any]:
        """One job."""
        return await self._json("GET", f"/jobs/{_quote(guid)}")

    async def stop(self, guid: str) -> dict[str, Any]:
        """Ask a job to stop; the job as it is (``stopping``)."""
        return await self._json("DELETE", f"/jobs/{_quote(guid)}")

    async def restart(self, guid: str) -> dict[str, Any]:
        """Start an ended (``exited`` or ``failed``) job again; the job (``starting``)."""
        return await self._json("POST", f"/jobs/{_quote(guid)}/restart")

    async def forget(self, guid: str) -> dict[str, Any]:
        """Forget an ended job (not a declared one); the job as it was."""
        return await self._json("POST", f"/jobs/{_quote(guid)}/forget")

    async def modules(self) -> list[dict[str, Any]]:
        """The modules a launch may name: ``{"name", "overridable", "defaults", ...}`` each."""
        return (await self._json("GET", "/modules"))["modules"]

    async def wait(self, guid: str, state: str, timeout: float) -> dict[str, Any]:
        """
        The job once it is ``state`` or has ended, or after ``timeout`` (up to
        60) s: the request itself waits a little longer than the daemon does,
        so that the daemon's answer, not the client's patience, ends it.
        """
        return await self._json("GET", f"/jobs/{_quote(guid)}",
                                params={"wait": state, "timeout": f"{timeout:g}"},
                                timeout=timeout + WAIT_MARGIN)

    async def update_config(self, guid: str, changes: dict[str, Any]) -> dict[str, Any]:
        """
        Change a job's overridable keys (pushed to it if it runs); the job,
        and whether the change is ``kept`` for the daemon's next start.
        """
        return await self._json("PATCH", f"/jobs/{_quote(guid)}/config", json=changes)

    async def logs(self, guid: str, lines: int = 100,
                   since: str | None = None) -> list[dict[str, Any]]:
        """
        The last ``lines`` output lines of a job (written at ``since`` or
        later: seconds since the epoch or ISO 8601): ``{"time", "stream", "line"}`` each.
        """
        params = {"lines": str(lines), **({"since": since} if since is not None else {})}
        answer = await self._json("GET", f"/jobs/{_quote(guid)}/logs", params=params)
        return answer["lines"]

    async def send(
        self, guid: str, method: str, path: str, json: Any = None, params: Any = None,
        data: bytes | None = None, content_type: str | None = None,
    ) -> tuple[int, str, bytes]:
        """
        Relay a request to a job's worker at ``path`` (a ``json`` body, or raw
        ``data`` of ``content_type``): ``(status, content type, body)``
        whatever the status (the worker's own answer, or the API's error if
        it could not relay).
        """
        path = "/".join(quote(p, safe=_PCHAR) for p in path.lstrip("/").split("/"))
        return await self._raw(method.upper(), f"/jobs/{_quote(guid)}/proxy/{path}", json,
                               params, data=data, content_type=content_type)

    async def events(self, on_event: Callable[[ServerEvent], None], logs: str | None = None,
                     last_id: str | None = None) -> None:
        """
        Follow ``GET /events``: call ``on_event`` for each job event (and each
        output line of job ``logs``, if given) until the stream ends; resume
        after event ``last_id``. Only the answer's start is bounded by
        ``timeout``; raise :class:`ApiError` or :class:`TransportError`.
        """
        headers = bearer_header(self._token)
        if last_id is not None:
            headers[b"Last-Event-ID"] = [last_id.encode("ascii")]
        params = {"logs": logs} if logs is not None else None
        try:
            response = await self.http.request(
                "GET", self.url + "/events", headers=headers, params=params, unbuffered=True,
                timeout=self.timeout, reactor=self.reactor)
        except Exception as exc:
            raise TransportError(f"cannot follow {self.url}/events: {type(exc).__name__}"
                                 ) from None
        if response.code >= 400:
            body = await response.content()
            raise ApiError(response.code, error_message(body, response.code))
        reader = _EventReader(on_event)
        response.deliverBody(reader)
        await reader.done

    async def reload(self) -> dict[str, list[str]]:
        """Make the daemon read its config again: what started, stopped, restarted..."""
        return await self._json("POST", "/reload")

    async def hooks(self) -> list[dict[str, Any]]:
        """The web-hook subscriptions."""
        return (await self._json("GET", "/hooks"))["hooks"]

    async def add_hook(self, url: str, events: list[str]) -> dict[str, Any]:
        """Subscribe ``url`` to ``events``: ``{"id", "url", "events", "secret"}``."""
        return await self._json("POST", "/hooks", json={"url": url, "events": list(events)})

    async def remove_hook(self, hook_id: str) -> None:
        """Drop a subscription."""
        await self._json("DELETE", f"/hooks/{_quote(hook_id)}")

    async def whoami(self) -> dict[str, Any]:
        """The caller's token: ``{"name", "role", "scope"}``."""
        return await self._json("GET", "/whoami")

    async def tokens(self) -> list[dict[str, Any]]:
        """The named tokens (never a secret)."""
        return (await self._json("GET", "/tokens"))["tokens"]

    async def make_token(self, name: str, role: str, scope: list[str],
                         expires_in: float | None = None) -> dict[str, Any]:
        """A new named token, with its ``secret`` (shown this once)."""
        body: dict[str, Any] = {"name": name, "role": role, "scope": scope}
        if expires_in is not None:
            body["expires_in"] = expires_in
        return await self._json("POST", "/tokens", json=body)

    async def revoke_token(self, name: str) -> None:
        """Revoke a named token at once."""
        await self._json("DELETE", f"/tokens/{_quote(name)}")

    async def rotate_admin(self, grace: float = 0.0) -> dict[str, Any]:
        """A new admin token (written by the daemon to admin.token); the old works ``grace`` s."""
        return await self._json("POST", "/tokens/admin/rotate", json={"grace": grace})

    async def audit(self, lines: int = 100) -> dict[str, Any]:
        """The last ``lines`` audit records and how many were dropped."""
        return await self._json("GET", "/audit", params={"lines": str(lines)})

    # -- services ----------------------------------------------------------

    async def services(self) -> list[dict[str, Any]]:
        """Every service, with its instances."""
        return (await self._json("GET", "/services"))["services"]

    async def service(self, name: str, wait: str | None = None,
                      timeout: float = 10.0) -> dict[str, Any]:
        """
        One service; with ``wait`` (``ready`` or ``rollout``), once it is so
        or after ``timeout`` (up to 60) s.
        """
        if wait is None:
            return await self._json("GET", f"/services/{_quote(name)}")
        return await self._json("GET", f"/services/{_quote(name)}",
                                params={"wait": wait, "timeout": f"{timeout:g}"},
                                timeout=timeout + WAIT_MARGIN)

    async def create_service(self, name: str, module: str, listen: str | None,
                             instances: int = 1, surge: int = 1, max_unavailable: int = 0,
                             session: str | None = None,
                             config: dict[str, Any] | None = None,
                             spread: str | None = None) -> dict[str, Any]:
        """
        Make a service: ``instances`` of ``module`` sharing ``listen`` (None:
        a module Slurm runs, its instances spread as ``spread`` says).
        """
        body: dict[str, Any] = {"name": name, "module": module,
                                "instances": instances, "surge": surge,
                                "max_unavailable": max_unavailable}
        if listen is not None:
            body["listen"] = listen
        if spread is not None:
            body["spread"] = spread
        if session is not None:
            body["session"] = session
        if config:
            body["config"] = config
        return await self._json("POST", "/services", json=body)

    async def scale(self, name: str, instances: int) -> dict[str, Any]:
        """Run ``instances`` of service ``name`` from now on."""
        return await self._json("PATCH", f"/services/{_quote(name)}",
                                json={"instances": instances})

    async def rollout(self, name: str, module: str | None = None,
                      config: dict[str, Any] | None = None) -> dict[str, Any]:
        """Roll service ``name`` out (to ``module`` and ``config``, if given)."""
        body: dict[str, Any] = {}
        if module is not None:
            body["module"] = module
        if config:
            body["config"] = config
        return await self._json("POST", f"/services/{_quote(name)}/rollout", json=body)

    async def remove_service(self, name: str) -> dict[str, Any]:
        """Remove service ``name`` (its instances drained)."""
        return await self._json("DELETE", f"/services/{_quote(name)}")
