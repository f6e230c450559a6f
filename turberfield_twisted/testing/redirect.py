"""
A worker that sends its callers elsewhere: every path answers 302 with
``Location`` the ``to`` query argument, as given (``/x``, ``//host/x``,
``http://host:port/x`` ...), and a short body.

``python -P -m turberfield_twisted.testing.redirect --guid G --port P``
"""

from typing import Any

from turberfield_twisted.worker import Klein, WorkerContext, run_worker


class Redirect:
    """Answers every path with a redirect to ``?to=``."""

    app = Klein()

    def __init__(self, ctx: WorkerContext):
        self.ctx = ctx

    @app.route("/", branch=True)
    def away(self, request: Any) -> bytes:
        to = request.args.get(b"to", [b"/"])[-1]
        request.setResponseCode(302)
        request.setHeader(b"Location", to)
        request.setHeader(b"Content-Type", b"text/plain")
        return b"see " + to


if __name__ == "__main__":
    run_worker(Redirect)
