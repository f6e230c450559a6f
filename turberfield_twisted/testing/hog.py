"""
A fault worker that uses what it is asked to: ``POST /allocate?mb=N``
allocates N MiB more and touches every page (so that it is resident) and
keeps it; ``POST /burn`` spins on the CPU until the process is killed.
``GET /`` answers its guid.

``python -P -m turberfield_twisted.testing.hog --guid G --port P``
"""

import json
import mmap
from typing import Any

from turberfield_twisted.worker import Klein, WorkerContext, run_worker


class Hog:
    """The app: what it has allocated so far."""

    app = Klein()

    def __init__(self, ctx: WorkerContext):
        self.ctx = ctx
        self.held: list[bytearray] = []

    @app.route("/", methods=["GET"])
    def guid(self, request: Any) -> str:
        return self.ctx.guid

    @app.route("/allocate", methods=["POST"])
    def allocate(self, request: Any) -> bytes:
        """Allocate ``mb`` MiB (default 64) more, resident; answer how much is held."""
        mb = int(request.args.get(b"mb", [b"64"])[0])
        block = bytearray(mb * 1024 * 1024)
        for offset in range(0, len(block), mmap.PAGESIZE):
            block[offset] = 1
        self.held.append(block)
        request.setHeader("Content-Type", "application/json")
        return json.dumps({"held_mb": sum(len(b) for b in self.held) // (1024 * 1024)}).encode()

    @app.route("/burn", methods=["POST"])
    def burn(self, request: Any) -> bytes:
        """Spin until killed (the answer never comes)."""
        while True:
            pass


if __name__ == "__main__":
    run_worker(Hog)
