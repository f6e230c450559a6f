"""
``make run`` before the daemon existed: launch three demo workers through
an Initiator, show each one's guid, port and answer, then stop them.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from turberfield_twisted.worker import Klein  # noqa: F401  (installs the asyncio reactor)

from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import react
from twisted.logger import Logger, globalLogBeginner, textFileLogObserver

from turberfield_twisted import Initiator
from turberfield_twisted.config import parse_config

log = Logger()

CONFIG = """
[demo]
listen_addr = 127.0.0.1
listen_port = 0
child_port_min = 49300
child_port_max = 49399

[turberfield_twisted.demo.hello]
greeting = hello
"""


async def main(reactor: Any) -> None:
    """Launch, ask, stop."""
    import treq

    init = Initiator(None, guid="demo", cfg=parse_config(CONFIG), reactor=reactor)
    init.startService()
    guids = [await init.launch("turberfield_twisted.demo.hello", session=f"s{i}")
             for i in range(3)]
    jobs = await gatherResults([init.ready(g, timeout=15) for g in guids])
    for job in jobs:
        response = await treq.get(f"http://127.0.0.1:{job.port}/", timeout=5, reactor=reactor)
        body = json.loads(await response.content())
        log.info("job {guid} on port {port} answered {body}", guid=job.guid, port=job.port,
                 body=json.dumps(body))
    await init.stopService()


if __name__ == "__main__":
    observer: Any = textFileLogObserver(sys.stdout)
    globalLogBeginner.beginLoggingTo([observer])
    react(lambda reactor: Deferred.fromCoroutine(main(reactor)))
