"""
A worker that holds requests until told: ``GET /hold`` prints ``held N``
(N requests held now) and is answered with the worker's guid only once
the worker gets SIGUSR1, which answers every request held. ``GET /``
answers its guid at once. For tests of what a stopping worker does with
the requests it holds.

``python -P -m turberfield_twisted.testing.held --guid G --port P``
"""

import signal
import sys
from typing import Any

from twisted.internet.defer import Deferred

from turberfield_twisted.worker import Klein, WorkerContext, run_worker

HELD = "held"


class Held:
    """The app: requests to ``/hold`` wait for SIGUSR1."""

    app = Klein()

    def __init__(self, ctx: WorkerContext):
        self.ctx = ctx
        self.waiting: list[Deferred[bytes]] = []
        signal.signal(signal.SIGUSR1,
                      lambda *_: ctx.reactor.callFromThread(self.release))  # type: ignore[attr-defined]

    def release(self) -> None:
        """Answer every request held."""
        waiting, self.waiting = self.waiting, []
        for d in waiting:
            d.callback(self.ctx.guid.encode())

    @app.route("/hold", methods=["GET"])
    def hold(self, request: Any) -> Deferred[bytes]:
        d: Deferred[bytes] = Deferred()
        self.waiting.append(d)
        sys.stdout.write(f"{HELD} {len(self.waiting)}\n")
        sys.stdout.flush()
        return d

    @app.route("/", methods=["GET"])
    def who(self, request: Any) -> str:
        return self.ctx.guid


if __name__ == "__main__":
    run_worker(Held)
