"""
A fault worker whose reactor gets stuck: ``block_after`` seconds (its
section's key, default 2) after it is built it prints ``stuck: blocking
the reactor`` and never returns to its reactor again (a loop of sleeps),
so it answers nothing, health checks included, and sends no watchdog
ping. With ``block_after = 0`` it never blocks: a healthy worker of the
same code. SIGKILL ends it (its SIGTERM handler can't run: its reactor
is stuck).

``python -P -m turberfield_twisted.testing.stuck --guid G --port P``
"""

import sys
import time
from typing import Any

from turberfield_twisted.worker import Klein, WorkerContext, run_worker

BLOCKING = "stuck: blocking the reactor"


def _block() -> None:
    sys.stdout.write(f"{BLOCKING}\n")
    sys.stdout.flush()
    while True:
        time.sleep(3600)


def stuck(ctx: WorkerContext) -> Klein:
    """A Klein app serving ``GET /`` with the guid, whose reactor blocks ``block_after`` s on."""
    app = Klein()
    after = float(ctx.section.get("block_after", "2"))
    if after > 0:
        ctx.reactor.callLater(after, _block)

    @app.route("/", methods=["GET"])
    def guid(request: Any) -> str:
        return ctx.guid

    return app


if __name__ == "__main__":
    run_worker(stuck)
