"""
A fault worker that floods its stdout: once built, and again on each
``POST /flood``, it writes one line of 1 MiB, then a line of raw bytes that
are not UTF-8, then ``flood: done``.

``python -P -m turberfield_twisted.testing.flood --guid G --port P``
"""

import os
from typing import Any

from turberfield_twisted.worker import Klein, WorkerContext, run_worker

LINE = 1024 * 1024
RAW = b"raw \xff\xfe\x80 bytes \xc3\x28 end"
DONE = "flood: done"


def flood() -> None:
    """Write the long line, the raw bytes and the marker (blocking, as print would)."""
    for chunk in (b"x" * LINE + b"\n", RAW + b"\n", f"{DONE}\n".encode()):
        view = memoryview(chunk)
        while view:
            view = view[os.write(1, view) :]


class Flood:
    """Floods when built and on ``POST /flood``."""

    app = Klein()

    def __init__(self, ctx: WorkerContext):
        self.ctx = ctx
        flood()

    @app.route("/flood", methods=["POST"])
    def again(self, request: Any) -> bytes:
        flood()
        return b"flooded"


if __name__ == "__main__":
    run_worker(Flood)
