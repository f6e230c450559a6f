"""
A demo worker: ``GET /`` answers with its guid, session and the non-secret
keys of its own config section; ``POST /echo`` echoes a JSON body.
"""

import json
from typing import Any

from turberfield_twisted.worker import Klein, WorkerContext, run_worker


class Hello:
    """The demo app: one instance per worker process."""

    app = Klein()

    def __init__(self, ctx: WorkerContext):
        self.ctx = ctx

    @app.route("/", methods=["GET"])
    def hello(self, request: Any) -> bytes:
        """Who this worker is and what it was told."""
        request.setHeader("Content-Type", "application/json")
        body = {"guid": self.ctx.guid, "session": self.ctx.session, "config": self.ctx.section}
        return json.dumps(body).encode()

    @app.route("/echo", methods=["POST"])
    def echo(self, request: Any) -> bytes:
        """The JSON body, back as it came (400 if it is not JSON)."""
        request.setHeader("Content-Type", "application/json")
        try:
            body = json.loads(request.content.read() or b"null")
        except ValueError:
            request.setResponseCode(400)
            return json.dumps({"error": "the body is not JSON"}).encode()
        return json.dumps({"guid": self.ctx.guid, "echo": body}).encode()


if __name__ == "__main__":
    run_worker(Hello)
