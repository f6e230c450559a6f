"""
A worker with a long answer: ``GET /?kib=N`` answers N KiB (8 MiB unless
told) of ``application/octet-stream``, written whole at once, so that it
streams out as fast as its caller reads.

``python -P -m turberfield_twisted.testing.stream --guid G --port P``
"""

from typing import Any

from turberfield_twisted.worker import Klein, WorkerContext, run_worker


class Stream:
    """Answers ``?kib=`` KiB on any path."""

    app = Klein()

    def __init__(self, ctx: WorkerContext):
        self.ctx = ctx

    @app.route("/", branch=True, methods=["GET"])
    def long(self, request: Any) -> bytes:
        kib = int(request.args.get(b"kib", [b"8192"])[-1])
        request.setHeader(b"Content-Type", b"application/octet-stream")
        return bytes(range(256)) * (4 * kib)


if __name__ == "__main__":
    run_worker(Stream)
