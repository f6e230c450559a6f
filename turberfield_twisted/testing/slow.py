"""
A worker that takes its time to get ready: building its app takes
``ready_delay`` seconds (its section's key; 2 by default), so it answers
its health check that long after it read its config. ``GET /`` answers its
guid.

``python -P -m turberfield_twisted.testing.slow --guid G --port P``
"""

import time
from typing import Any

from turberfield_twisted.worker import Klein, WorkerContext, run_worker

#: Seconds to get ready when the config does not say.
READY_DELAY = 2.0


class Slow:
    """The app, built ``ready_delay`` seconds late."""

    app = Klein()

    def __init__(self, ctx: WorkerContext):
        self.guid = ctx.guid
        time.sleep(float(ctx.section.get("ready_delay", READY_DELAY)))

    @app.route("/", methods=["GET"])
    def who(self, request: Any) -> str:
        return self.guid


if __name__ == "__main__":
    run_worker(Slow)
