"""
A service's shared socket: bound once by the daemon, kept open for the
service's life, handed to every instance (see
:mod:`turberfield_twisted.worker.sockets`). The daemon never accepts on
it: the kernel keeps one queue of connections that every instance
accepts from, so a connection waiting there when an instance stops (or
is killed) is taken by another one, and no byte of traffic passes
through the daemon.
"""

from __future__ import annotations

import errno
import socket

from turberfield_twisted.errors import ServiceConflict
from turberfield_twisted.launch.interfaces import ListenSocket
from turberfield_twisted.services.model import format_listen

__all__ = ["BACKLOG", "SharedSocket"]

#: The accept queue of a service's socket: connections that wait there while
#: no instance is free (or while one is started) are kept, up to this many
#: (and up to the kernel's ``net.core.somaxconn``).
BACKLOG = 1024


class SharedSocket:
    """A listening TCP socket bound at ``host``:``port`` for service ``name``."""

    def __init__(self, name: str, host: str, port: int, backlog: int = BACKLOG):
        self.name, self.host, self.port = name, host, port
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            # A restarted daemon binds again at once, past connections in TIME_WAIT;
            # a port another socket listens on is still refused (no SO_REUSEPORT).
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((host, port))
            sock.listen(backlog)
        except OSError as exc:
            sock.close()
            why = ("another process listens on it" if exc.errno == errno.EADDRINUSE
                   else exc.strerror or type(exc).__name__)
            raise ServiceConflict(f"service {name} can't listen on"
                                  f" {format_listen(host, port)}: {why}") from None
        self._sock: socket.socket | None = sock

    def __repr__(self) -> str:
        return f"<SharedSocket {self.name} {format_listen(self.host, self.port)}>"

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._sock is None

    def handed(self) -> ListenSocket:
        """What an instance's spawn is handed: this socket, named for its service."""
        if self._sock is None:
            raise ServiceConflict(f"service {self.name}'s socket is closed")
        return ListenSocket(self.name, self._sock.fileno())

    def close(self) -> None:
        """
        Close the daemon's copy (once every instance has ended, so that
        nothing waits on the socket any more).
        """
        if self._sock is not None:
            self._sock.close()
            self._sock = None
