"""
Logs on disk, the reactor's side (issue 23): what queuing a line costs the
reactor, and what the bounded queue does when lines come faster than the
writer thread writes them. 200,000 lines of 100 characters for 10 jobs are
handed to a :class:`~turberfield_twisted.daemon.joblogs.JobLogs` 1,000 a
reactor turn (faster than any worker's pipe brings them: the writer thread
gets the GIL only between turns), then it prints the cost a line, the
longest turn, when the last line was on disk, and how many were dropped
(counted, as a full disk's are)::

    .venv/bin/python -P benchmarks/logs_queue.py

Bounded: 200,000 lines, files in a temporary directory removed after.
"""

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any


async def run(reactor: Any) -> None:
    """Queue the lines, wait until they are on disk, print what it cost."""
    from twisted.internet import task

    from turberfield_twisted.config.logs import LogSettings
    from turberfield_twisted.daemon.joblogs import JobLogs
    from turberfield_twisted.jobs.job import OutputLine

    root = Path(tempfile.mkdtemp())
    logs = JobLogs(reactor, root, LogSettings(dir=str(root)), lambda guid: None)
    lines = [OutputLine(f"job{n % 10}", time.time(), "stdout", "x" * 100)
             for n in range(200_000)]
    worst = 0.0
    start = time.perf_counter()
    for k in range(0, len(lines), 1000):  # 1,000 lines a reactor turn
        began = time.perf_counter()
        for line in lines[k:k + 1000]:
            logs.line(line)
        worst = max(worst, time.perf_counter() - began)
        await task.deferLater(reactor, 0, lambda: None)
    queued = time.perf_counter() - start
    await logs.read("job0", 1)  # after every line queued before it
    total = time.perf_counter() - start
    await logs.close()
    shutil.rmtree(root)
    print(f"200,000 lines of 100 characters: {queued / 200_000 * 1e6:.2f} us a line on the"
          f" reactor; the longest turn (1,000 lines) {worst * 1e3:.1f} ms; all on disk after"
          f" {total:.2f} s; dropped {sum(logs.dropped.values())}")


def main() -> None:
    from twisted.internet import asyncioreactor

    asyncioreactor.install()
    from twisted.internet import defer, task

    task.react(lambda reactor: defer.Deferred.fromCoroutine(run(reactor)))


if __name__ == "__main__":
    main()
