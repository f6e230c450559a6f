"""
A test worker whose every path is its own: it answers any method on any
path with ``{"guid", "method", "path"}``, including the paths the
control API uses for itself under a job (``/logs``, ``/config``,
``/events``, ``/restart``), so a test can see that the relay shadows none.

``python -P -m turberfield_twisted.testing.echo_paths --guid G --port P``
"""

import json
from typing import Any

from turberfield_twisted.worker import Klein, WorkerContext, run_worker


class EchoPaths:
    """Says which path and method it was asked."""

    app = Klein()

    def __init__(self, ctx: WorkerContext):
        self.ctx = ctx

    @app.route("/", branch=True)
    def any_path(self, request: Any) -> bytes:
        request.setHeader("Content-Type", "application/json")
        return json.dumps({"guid": self.ctx.guid, "method": request.method.decode(),
                           "path": request.path.decode()}).encode()


if __name__ == "__main__":
    run_worker(EchoPaths)
