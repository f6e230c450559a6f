"""
The control API's ``/hooks`` routes: list, add and remove web-hook
subscriptions, for admins.

:class:`HooksAPI` is mounted under ``/hooks`` by
:class:`~turberfield_twisted.http.api.ControlAPI`, so its routes are relative
to that (``/`` is ``/hooks``). Errors are answered by the one table of
:mod:`turberfield_twisted.http.web`.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.logger import Logger
from twisted.web.server import Request

from turberfield_twisted.access.gate import Gate
from turberfield_twisted.configtext import redact
from turberfield_twisted.errors import ApiError, DaemonStopping, Invalid
from turberfield_twisted.hooks.dispatcher import HookDispatcher
from turberfield_twisted.http.gate import GatedRouter
from turberfield_twisted.http.roles import ROLES
from turberfield_twisted.http.web import json_response, read_object

__all__ = ["HooksAPI"]

_ADD_KEYS = frozenset({"url", "events"})


class HooksAPI:
    """
    Web-hook subscriptions of ``hooks`` (a
    :class:`~turberfield_twisted.hooks.dispatcher.HookDispatcher`, or None: 404),
    for admins (``gate`` admits each request); bodies over ``max_body`` bytes are
    refused (413). Once ``stopping()`` is true (the daemon stops), adding
    or removing one is refused (:class:`DaemonStopping`, 503).
    """

    app = GatedRouter(ROLES, "/hooks")
    log = Logger()

    def __init__(self, hooks: HookDispatcher | None, gate: Gate, max_body: int,
                 stopping: Callable[[], bool] = lambda: False):
        self.hooks = hooks
        self.gate = gate
        self.max_body = max_body
        self._stopping = stopping

    def _dispatcher(self, request: Request, change: bool = False) -> HookDispatcher:
        if self.hooks is None:
            raise ApiError(404, "web-hooks are not enabled")
        if change and self._stopping():
            raise DaemonStopping()
        return self.hooks

    @app.route("/", methods=["GET"])
    def list_hooks(self, request: Request) -> bytes:
        """Every subscription, without its secret."""
        hooks = self._dispatcher(request)
        return json_response(request, 200, {"hooks": [redact(hook) for hook in hooks.list()]})

    @app.route("/", methods=["POST"])
    def add_hook(self, request: Request) -> bytes:
        """
        ``{"url", "events"?: [name, ...]}`` (default ``["*"]``): subscribe (201;
        the secret is shown this once); the same URL and events again: 200
        with the existing subscription, its secret not shown. The dispatcher
        checks both (400, or 403 for an address outside its allow list).
        """
        hooks = self._dispatcher(request, change=True)
        body = read_object(request, self.max_body, _ADD_KEYS)
        if "events" in body and body["events"] is None:
            raise Invalid("events may be left out (every event), but not null")
        hook = hooks.add(body.get("url", ""), body.get("events", ["*"]))  # it checks both
        if hook.get("existing"):
            return json_response(request, 200, hook)  # the same URL and events again
        self.log.info("web-hook {hook_id} added by the control API", hook_id=hook.get("id"))
        return json_response(request, 201, hook)

    @app.route("/<hook_id>", methods=["DELETE"])
    def remove_hook(self, request: Request, hook_id: str) -> bytes:
        """Unsubscribe; 204."""
        hooks = self._dispatcher(request, change=True)
        hooks.remove(hook_id)
        self.log.info("web-hook {hook_id} removed by the control API", hook_id=hook_id[:64])
        request.setResponseCode(204)
        return b""
