"""
Importing this installs the asyncio reactor, on a new event loop, unless a
reactor is installed already: the worker runtime imports it before Klein,
whose import would install the default reactor.

It first notes systemd's socket activation variables as the process
started with them (:data:`STARTED_WITH`): importing
``twisted.internet.endpoints`` (Klein does) takes ``LISTEN_FDS`` and
``LISTEN_PID`` out of ``os.environ`` for its ``systemd:`` endpoint, before
the runtime can read them.
"""

import asyncio
import os
import sys
from typing import Any

from turberfield_twisted.contract import LISTEN_FDNAMES_ENV, LISTEN_FDS_ENV, LISTEN_PID_ENV

#: The socket activation variables of this process's environment when it started.
STARTED_WITH = {name: os.environ[name] for name in (LISTEN_FDS_ENV, LISTEN_PID_ENV,
                                                    LISTEN_FDNAMES_ENV) if name in os.environ}


def install(loop: asyncio.AbstractEventLoop | None = None) -> Any:
    """
    Install the asyncio reactor on ``loop`` (a new event loop if None), made
    the current event loop; return the reactor. None may be installed yet.
    """
    from twisted.internet import asyncioreactor

    loop = asyncio.new_event_loop() if loop is None else loop
    asyncio.set_event_loop(loop)
    asyncioreactor.install(loop)
    from twisted.internet import reactor

    return reactor


if "twisted.internet.reactor" not in sys.modules:  # pragma: no branch
    install()
