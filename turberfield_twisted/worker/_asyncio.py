"""
Importing this installs the asyncio reactor, on a new event loop, unless a
reactor is installed already: the worker runtime imports it before Klein,
whose import would install the default reactor.
"""

import asyncio
import sys
from typing import Any


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
