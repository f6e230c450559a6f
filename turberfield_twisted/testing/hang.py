"""
A fault worker that will not stop when asked: a real worker whose app,
once built, answers SIGTERM only by printing ``hang: SIGTERM ignored``.
SIGKILL (or its lifeline reaching EOF) ends it.

``python -P -m turberfield_twisted.testing.hang --guid G --port P``
"""

import os
import signal
from typing import Any

from turberfield_twisted.worker import Klein, WorkerContext, run_worker

IGNORED = "hang: SIGTERM ignored"


class Hang:
    """Serves ``GET /`` with its guid; shrugs off SIGTERM."""

    app = Klein()

    def __init__(self, ctx: WorkerContext):
        self.ctx = ctx
        signal.signal(signal.SIGTERM, self.ignore)

    def ignore(self, signum: int, frame: Any) -> None:
        os.write(1, f"{IGNORED}\n".encode())

    @app.route("/", methods=["GET"])
    def guid(self, request: Any) -> str:
        return self.ctx.guid


if __name__ == "__main__":
    run_worker(Hang)
