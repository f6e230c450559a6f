"""
Twisted's procmon (``twisted.runner.procmon.ProcessMonitor``) supervising
one bare worker per port given: ``python -P procmon_run.py PORT...``.
``twistd procmon`` runs a single command; this is the same service with
several. SIGTERM stops the workers (TERM, KILL after killTime), then it.
"""

import os
import sys

from twisted.internet import reactor
from twisted.runner.procmon import ProcessMonitor

HERE = os.path.dirname(os.path.abspath(__file__))


def main() -> None:
    monitor = ProcessMonitor()
    monitor.threshold = 1
    for port in sys.argv[1:]:
        monitor.addProcess(f"w{port}", [sys.executable, "-P", os.path.join(HERE, "bare_worker.py"),
                                        "--port", port], env=dict(os.environ))
    monitor.startService()
    reactor.addSystemEventTrigger("before", "shutdown", monitor.stopService)
    reactor.run()


if __name__ == "__main__":
    main()
