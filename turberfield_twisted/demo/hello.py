"""
A demo worker: ``GET /`` answers with its guid, session and the non-secret
keys of its own config section (as last sent by the initiator);
``POST /echo`` echoes a JSON body; ``POST /say`` prints its body on
stdout (the daemon keeps it in the job's output); ``POST /notify`` posts
the JSON body to the initiator as a ``notified`` event.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

from turberfield_twisted.errors import ApiError, TransportError
from turberfield_twisted.worker import Klein, WorkerContext, run_worker

if TYPE_CHECKING:
    from twisted.web.iweb import IRequest


def _error(request: IRequest, code: int, message: str) -> bytes:
    request.setResponseCode(code)
    return json.dumps({"error": message}).encode()


class Hello:
    """The demo app: one instance per worker process."""

    app = Klein()

    def __init__(self, ctx: WorkerContext):
        self.ctx = ctx
        self.section = ctx.section

    def on_config(self, section: dict[str, str]) -> None:
        """
        Keep the section of a config the initiator sent; refuse (raise) a
        greeting that is empty or over 80 characters: the change is then
        undone whole, and the caller told why.
        """
        if not 0 < len(section.get("greeting", "hello")) <= 80:
            raise ValueError("greeting must be 1 to 80 characters")
        self.section = section

    @app.route("/", methods=["GET"])
    def hello(self, request: IRequest) -> bytes:
        """Who this worker is and what it was told."""
        request.setHeader("Content-Type", "application/json")
        body = {"guid": self.ctx.guid, "session": self.ctx.session, "config": self.section}
        return json.dumps(body).encode()

    @app.route("/echo", methods=["POST"])
    def echo(self, request: IRequest) -> bytes:
        """The JSON body, back as it came (400 if it is not JSON)."""
        request.setHeader("Content-Type", "application/json")
        try:
            body = json.loads(request.content.read() or b"null")
        except ValueError:
            return _error(request, 400, "the body is not JSON")
        return json.dumps({"guid": self.ctx.guid, "echo": body}).encode()

    @app.route("/say", methods=["POST"])
    def say(self, request: IRequest) -> bytes:
        """Print the body (one line of text) on stdout, as a worker's own output; 202."""
        text = request.content.read(4096).decode("utf-8", "replace").replace("\n", " ")
        sys.stdout.write(f"{text}\n")
        sys.stdout.flush()
        request.setResponseCode(202)
        return b""

    @app.route("/notify", methods=["POST"])
    async def notify(self, request: IRequest) -> bytes:
        """Post the JSON body to the initiator as event ``notified``; 202."""
        request.setHeader("Content-Type", "application/json")
        try:
            body = json.loads(request.content.read() or b"null")
        except ValueError:
            return _error(request, 400, "the body is not JSON")
        if self.ctx.parent is None:
            return _error(request, 503, "no initiator to notify")
        try:
            await self.ctx.parent.post_event("notified", body)
        except (ApiError, TransportError) as exc:
            return _error(request, 502, str(exc))
        request.setResponseCode(202)
        return json.dumps({"notified": True}).encode()


if __name__ == "__main__":
    run_worker(Hello)
