"""
The seed API's :class:`Proactor`, the base of anything that does a job of
work (a worker needs only this, and loads none of the daemon's code
through it). The seed module's other names, ``Initiator`` and ``Worker``,
are :mod:`turberfield_twisted.proactor`'s.
"""

from __future__ import annotations

import asyncio
from configparser import ConfigParser
from typing import IO, TYPE_CHECKING, Any

from turberfield_twisted.configtext import make_config
from turberfield_twisted.worker.stdin import read_stream

if TYPE_CHECKING:
    from turberfield_twisted.worker.reactor import IClientReactor

__all__ = ["Proactor"]

class Proactor:
    """
    The basic behaviour of a module that does a job of work: options, a
    config, and the event loop (the asyncio loop under the reactor).

    ``options`` gives dotted access to command line options;
    ``loop`` is an asyncio event loop (default: the reactor's);
    ``reactor`` is the Twisted reactor (default: the installed one, which
    must be the asyncio reactor if ``loop`` is not given); ``cfg`` a
    config to start with (default: an empty one).
    """

    def __init__(self, options: Any, loop: asyncio.AbstractEventLoop | None = None, **kwargs: Any):
        self.options = options
        reactor = kwargs.pop("reactor", None)
        if reactor is None:
            from twisted.internet import reactor as _global_reactor

            reactor = _global_reactor
        self.reactor: IClientReactor = reactor
        if loop is None:
            # The asyncio reactor has no public way to give its loop (asyncio's current
            # loop is it only if whoever installed the reactor made it so); a reactor
            # of another kind has none. Checked on Twisted 26.10.0; used here only.
            loop = getattr(reactor, "_asyncioEventloop", None)
        self.loop = loop
        self.cfg = kwargs.pop("cfg", None) or make_config()
        if kwargs:
            raise TypeError(f"unexpected keyword arguments: {', '.join(sorted(kwargs))}")

    async def read_config(self, fObj: IO[Any], timeout: float | None = 3) -> ConfigParser:
        """
        Read this object's config from ``fObj`` (e.g. stdin) up to EOF on the
        event loop, store it as ``cfg`` and return it.

        Raise :class:`asyncio.TimeoutError` if no complete config is seen
        within ``timeout`` seconds (None: wait for EOF however long it
        takes), :class:`ConfigError` if it is malformed.
        """
        if self.loop is None:
            raise RuntimeError("read_config needs an asyncio loop (use the asyncio reactor)")
        self.cfg = await read_stream(fObj, timeout, self.loop)
        return self.cfg
