"""
A worker that writes lines when asked: ``chatter: up`` once built, and on
each ``POST /say?lines=N&size=S&mark=TEXT`` N lines of S bytes on stdout
(numbered), one line on stderr, then TEXT on stdout, before it answers.

``python -P -m turberfield_twisted.testing.chatter --guid G --port P``
"""

import os
from typing import Any

from turberfield_twisted.worker import Klein, WorkerContext, run_worker

UP = "chatter: up"


def write_all(data: bytes, fd: int = 1) -> None:
    """Write ``data`` whole to ``fd`` (blocking, as print would)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _arg(request: Any, name: bytes, default: bytes) -> bytes:
    return bytes(request.args.get(name, [default])[-1])


class Chatter:
    """Says ``UP`` when built, and what ``POST /say`` asks."""

    app = Klein()

    def __init__(self, ctx: WorkerContext):
        self.ctx = ctx
        write_all(f"{UP}\n".encode())

    @app.route("/say", methods=["POST"])
    def say(self, request: Any) -> bytes:
        lines = int(_arg(request, b"lines", b"1"))
        size = max(12, int(_arg(request, b"size", b"40")))
        mark = _arg(request, b"mark", b"chatter: said")
        batch: list[bytes] = []
        for n in range(lines):
            batch.append(b"line %09d " % n + b"x" * (size - 15) + b"\n")
            if len(batch) >= 1024:
                write_all(b"".join(batch))
                batch.clear()
        write_all(b"".join(batch))
        write_all(b"chatter: on stderr\n", 2)
        write_all(mark + b"\n")
        return b"said"


if __name__ == "__main__":
    run_worker(Chatter)
