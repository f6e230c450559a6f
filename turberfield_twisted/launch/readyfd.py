"""
The daemon's end of a worker's ready fd
(:data:`~turberfield_twisted.contract.READY_FD`): :class:`ReadyPipe`.

Until the worker's first line (``READY=1``) the pipe is read as data
comes, so readiness is heard at once; after it, only when :meth:`ReadyPipe.poll`
asks (at each liveness check), so that a worker's watchdog pings
(``WATCHDOG=1``, two each ``live_interval``) cost the daemon no wakeup of
their own: a wakeup of its reactor costs more than the read.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IReactorFDSet, IReadDescriptor
from twisted.python.failure import Failure
from zope.interface import implementer

__all__ = ["ReadyPipe"]

_T = TypeVar("_T")

#: The most read at once.
_CHUNK = 65536


def _fed_to_nobody(data: bytes) -> None:
    """A closed pipe's ``feed``: nothing is read from it any more."""


@implementer(IReadDescriptor)
class ReadyPipe:
    """
    Read ``fd`` (the daemon's end of a ready fd, which it owns from now on)
    on ``reactor``, handing what comes to ``feed(data)``: as it comes until
    a line has come, then at each :meth:`poll`. :meth:`close` once the
    worker has ended.
    """

    def __init__(self, reactor: IReactorFDSet, fd: int, feed: Callable[[bytes], None]):
        self._reactor = reactor
        self.fd = fd
        self._feed = feed
        os.set_blocking(fd, False)
        self._reading = True
        reactor.addReader(self)

    def fileno(self) -> int:
        return self.fd

    def logPrefix(self) -> str:
        return "ready-fd"

    def _read(self) -> bytes | None:
        """What is there to read (None: nothing yet; empty: the end)."""
        try:
            return os.read(self.fd, _CHUNK)
        except BlockingIOError:
            return None
        except OSError:
            return b""

    def doRead(self) -> Any:  # as Twisted's own: an exception (not the Failure it declares)
        data = self._read()
        if data is None:
            return None
        if not data:
            self._reading = False  # the reactor lets it go, then calls connectionLost
            return ConnectionDone()
        self._feed(data)
        if b"\n" in data:
            self._reactor.removeReader(self)
            self._reading = False
        return None

    def connectionLost(self, reason: Failure) -> None:
        self.close()

    def poll(self) -> None:
        """Read what has come since (once it is no longer read as it comes)."""
        while self.fd >= 0 and not self._reading:
            data = self._read()
            if data is None:
                return
            if not data:
                self.close()
                return
            self._feed(data)
            if len(data) < _CHUNK:
                return

    def close(self) -> None:
        """Read no more, close the fd, and let go of ``feed`` (which may hold its owner)."""
        if self._reading:
            self._reactor.removeReader(self)
            self._reading = False
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)
        self._feed = _fed_to_nobody

    def close_with(self, result: _T) -> _T:
        """:meth:`close`, and pass ``result`` on (a callback of the worker's end)."""
        self.close()
        return result
