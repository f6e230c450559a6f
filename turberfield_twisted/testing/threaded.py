"""
A worker module that starts a thread when imported: it can't be forked
from a warm template (the thread would not survive the fork), so a warm
section for it is refused and its workers start cold.

``python -P -m turberfield_twisted.testing.threaded --guid G --port P``
"""

import threading
from typing import Any

from turberfield_twisted.worker import Klein, WorkerContext, run_worker

_stop = threading.Event()
_ticker = threading.Thread(target=_stop.wait, name="ticker", daemon=True)
_ticker.start()


class Threaded:
    """``GET /`` answers ``threaded``."""

    app = Klein()

    def __init__(self, ctx: WorkerContext):
        self.ctx = ctx

    @app.route("/", methods=["GET"])
    def hello(self, request: Any) -> bytes:
        return b"threaded"


if __name__ == "__main__":
    run_worker(Threaded)
