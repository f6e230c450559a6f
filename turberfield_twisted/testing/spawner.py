"""
A fault worker that leaves a process behind: a real worker that starts a
grandchild (a python that waits for a signal, with a 5 minute alarm as a
last resort) and reports its pid on ``GET /child``. The grandchild does
not watch its parent, so only a signal to the process group ends it. With
``grandchild = ignores-term`` in its section the grandchild ignores
SIGTERM too: only SIGKILL ends it.

``python -P -m turberfield_twisted.testing.spawner --guid G --port P``
"""

import json
import subprocess
import sys
from typing import Any

from turberfield_twisted.worker import Klein, WorkerContext, run_worker

GRANDCHILD = "import signal; signal.alarm(300); signal.pause()"

#: The grandchild of ``grandchild = ignores-term``.
DEAF_GRANDCHILD = ("import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
                   " signal.alarm(300); signal.pause()")


class Spawner:
    """Starts the grandchild when built; ``GET /child`` gives its pid."""

    app = Klein()

    def __init__(self, ctx: WorkerContext):
        self.ctx = ctx
        deaf = ctx.section.get("grandchild") == "ignores-term"
        self.child = subprocess.Popen(
            [sys.executable, "-P", "-c", DEAF_GRANDCHILD if deaf else GRANDCHILD],
            stdin=subprocess.DEVNULL,
        )

    @app.route("/child", methods=["GET"])
    def child_pid(self, request: Any) -> bytes:
        request.setHeader("Content-Type", "application/json")
        return json.dumps({"pid": self.child.pid}).encode()


if __name__ == "__main__":
    run_worker(Spawner)
