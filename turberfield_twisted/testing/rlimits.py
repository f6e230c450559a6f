"""
A worker that tells the rlimits it started under: its very first act, before
it imports anything of the runtime, reads its own ``RLIMIT_NOFILE`` and
``RLIMIT_CPU``; ``GET /`` answers them as ``{"nofile": [soft, hard],
"cpu": [soft, hard]}``. (A warm worker runs this module again as
``__main__`` after its fork, so it reads them as a fork too.)

``python -P -m turberfield_twisted.testing.rlimits --guid G --port P``
"""

import resource

FIRST = {"nofile": resource.getrlimit(resource.RLIMIT_NOFILE),
         "cpu": resource.getrlimit(resource.RLIMIT_CPU)}

import json  # noqa: E402  (after the first read, on purpose)
from typing import Any  # noqa: E402

from turberfield_twisted.worker import Klein, WorkerContext, run_worker  # noqa: E402


class Rlimits:
    """Answers the rlimits read first."""

    app = Klein()

    def __init__(self, ctx: WorkerContext):
        self.ctx = ctx

    @app.route("/", methods=["GET"])
    def first(self, request: Any) -> bytes:
        request.setHeader(b"Content-Type", b"application/json")
        return json.dumps(FIRST).encode()


if __name__ == "__main__":
    run_worker(Rlimits)
