"""
Importing this installs the asyncio reactor, on a new event loop, unless a
reactor is installed already: the worker runtime imports it before Klein,
whose import would install the default reactor.
"""

import asyncio
import sys

if "twisted.internet.reactor" not in sys.modules:  # pragma: no branch
    from twisted.internet import asyncioreactor

    _loop = asyncio.new_event_loop()
    asyncio.set_event_loop(_loop)
    asyncioreactor.install(_loop)
