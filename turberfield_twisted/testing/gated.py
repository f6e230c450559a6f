"""
A fault worker whose live config changes wait for the test: its
``on_config`` prints ``gated: GREETING waits`` and waits until ``POST
/release`` with ``{"greeting": GREETING, "accept": true}`` (or false) lets
it go; then it takes the change, or refuses it (raises). ``GET /`` answers
``{"greeting": ...}``, the greeting it has.

``python -P -m turberfield_twisted.testing.gated --guid G --port P``
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred

from turberfield_twisted.worker import Klein, WorkerContext, run_worker

if TYPE_CHECKING:
    from twisted.web.iweb import IRequest

#: What it prints (with the greeting) when a change begins to wait.
WAITS = "gated: {greeting} waits"


class Gated:
    """The app: one greeting, changed only when the test lets a change through."""

    app = Klein()

    def __init__(self, ctx: WorkerContext):
        self.greeting = ctx.section.get("greeting", "")
        self._waiting: dict[str, Deferred[bool]] = {}

    async def on_config(self, section: dict[str, str]) -> None:
        """Wait for the test's word on this greeting; take it, or refuse it."""
        greeting = section.get("greeting", "")
        gate: Deferred[bool] = Deferred()
        self._waiting[greeting] = gate
        print(WAITS.format(greeting=greeting), flush=True)
        if not await gate:
            raise ValueError(f"greeting {greeting!r} refused by the test")
        self.greeting = greeting

    @app.route("/", methods=["GET"])
    def show(self, request: IRequest) -> bytes:
        """The greeting it has."""
        request.setHeader("Content-Type", "application/json")
        return json.dumps({"greeting": self.greeting}).encode()

    @app.route("/release", methods=["POST"])
    def release(self, request: IRequest) -> bytes:
        """``{"greeting", "accept"}``: let the change to that greeting go on; 404 if none waits."""
        request.setHeader("Content-Type", "application/json")
        body = json.loads(request.content.read() or b"{}")
        gate = self._waiting.pop(str(body.get("greeting")), None)
        if gate is None:
            request.setResponseCode(404)
            return json.dumps({"error": "no change waits with that greeting"}).encode()
        gate.callback(bool(body.get("accept")))
        return json.dumps({"released": True}).encode()


if __name__ == "__main__":
    run_worker(Gated)
