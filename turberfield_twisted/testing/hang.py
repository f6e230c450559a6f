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


def _ignore(signum: int, frame: Any) -> None:
    os.write(1, f"{IGNORED}\n".encode())


def hang(ctx: WorkerContext) -> Klein:
    """A Klein app (built per worker, as a factory may) that serves ``GET /`` with the guid."""
    signal.signal(signal.SIGTERM, _ignore)
    app = Klein()

    @app.route("/", methods=["GET"])
    def guid(request: Any) -> str:
        return ctx.guid

    return app


if __name__ == "__main__":
    run_worker(hang)
