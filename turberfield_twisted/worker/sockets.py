"""
Listening sockets a worker inherits: a service's instance gets the
service's shared socket from the daemon the way systemd's socket
activation hands sockets down, so that servers that already speak it
take it unchanged:

- the sockets are fds 3, 4 ... (``LISTEN_FDS`` of them), each already
  bound and listening;
- ``LISTEN_PID`` is the worker's pid (sockets meant for another process
  are not taken), ``LISTEN_FDNAMES`` their names (the service's);
- the lifeline and the ready fd follow them (3 + ``LISTEN_FDS`` and 4 +
  ``LISTEN_FDS``: :func:`~turberfield_twisted.contract.lifeline_fd`).

:func:`take_inherited` reads and clears that (what the worker starts
inherits none of it); :func:`adopt` serves a site on each socket with
``reactor.adoptStreamPort``. Every instance accepts from the one queue
the kernel keeps for the socket: connections waiting there when an
instance stops listening are taken by another, and the daemon, which
holds the socket open for the service's life, never loses one.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping, MutableMapping

from twisted.internet.interfaces import IListeningPort, IReactorSocket
from twisted.web.server import Site

from turberfield_twisted.contract import (
    LISTEN_FDNAMES_ENV,
    LISTEN_FDS_ENV,
    LISTEN_FDS_START,
    LISTEN_PID_ENV,
    inherited_sockets,
)
from turberfield_twisted.worker._asyncio import STARTED_WITH

__all__ = ["NotASocket", "adopt", "take_inherited"]


class NotASocket(Exception):
    """An inherited fd is not a listening TCP socket."""


def take_inherited(environ: MutableMapping[str, str], pid: int,
                   started_with: Mapping[str, str] = STARTED_WITH) -> int:
    """
    How many listening sockets this process (``pid``) inherited at fds 3
    on, as ``environ`` says, or ``started_with`` (what it said as the
    process started: Twisted's ``systemd:`` endpoint takes the variables
    out of it on import); the variables are removed from ``environ`` and
    the sockets made close-on-exec, so that nothing the worker starts
    holds them or believes they are its own.
    """
    count = inherited_sockets({**started_with, **environ}, pid)
    for name in (LISTEN_FDS_ENV, LISTEN_PID_ENV, LISTEN_FDNAMES_ENV):
        environ.pop(name, None)
    for fd in range(LISTEN_FDS_START, LISTEN_FDS_START + count):
        try:
            os.set_inheritable(fd, False)
        except OSError:
            pass  # not open: adopt() says so
    return count


def _family(fd: int) -> socket.AddressFamily:
    """The address family of the listening TCP socket ``fd``; NotASocket if it is not one."""
    try:
        probe = socket.socket(fileno=os.dup(fd))
    except OSError as exc:
        raise NotASocket(f"fd {fd} is not a socket ({exc.strerror})") from None
    try:
        listening = probe.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        if (probe.family not in (socket.AF_INET, socket.AF_INET6)
                or probe.type != socket.SOCK_STREAM or not listening):
            raise NotASocket(f"fd {fd} is not a listening TCP socket")
        return probe.family
    finally:
        probe.close()


def adopt(reactor: IReactorSocket, count: int,
          factory: Site) -> list[IListeningPort]:
    """
    Serve ``factory`` (the worker's site) on each of the ``count`` inherited sockets (fds 3
    on); raise :class:`NotASocket` if one is not a listening TCP socket.
    The reactor listens on its own copy of each: the inherited fd is
    closed, so that stopping the port leaves this process holding none.
    """
    ports = []
    for fd in range(LISTEN_FDS_START, LISTEN_FDS_START + count):
        family = _family(fd)
        os.set_blocking(fd, False)
        # Twisted's stub takes a ServerFactory of its default protocol type only.
        ports.append(reactor.adoptStreamPort(fd, family, factory))  # type: ignore[arg-type]
        os.close(fd)
    return ports
