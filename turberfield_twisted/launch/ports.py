"""
Port choice, one way for every caller: :meth:`PortBook.choose` gives a
preferred port if it is usable, else the lowest usable one of a range;
usable means held by no other job, not found busy, not reserved and (asked
of a probe, the launcher's) not in use. The lifecycle keeps its
:class:`PortBook` of who holds which port; :func:`next_port`, the seed
API's choice from a config's section, is the same choice over a book
that holds nothing.
"""

from __future__ import annotations

import configparser
import errno
import socket
from collections.abc import Callable, Container, Iterable, Mapping

import attrs

from turberfield_twisted.errors import NoFreePort

__all__ = ["PortBook", "TakenPorts", "next_port", "port_in_use"]


@attrs.frozen
class TakenPorts:
    """
    The ports ``holder`` may not have, as a view (nothing is copied, so a
    port choice costs the same however many jobs hold ports): those held
    by another, those it found ``busy`` and the ``reserved`` ones.
    """

    held: Mapping[int, object]
    holder: object
    busy: Container[int]
    reserved: Container[int]

    def __contains__(self, port: object) -> bool:
        if not isinstance(port, int):
            return False
        other = self.held.get(port)
        return ((other is not None and other is not self.holder) or port in self.busy
                or port in self.reserved)


@attrs.define
class PortBook:
    """
    Which job holds which port of the child range (``held``), and the ports
    never handed out (``reserved``: the control API's own, once it listens).
    """

    held: dict[int, object] = attrs.field(factory=dict)
    reserved: set[int] = attrs.field(factory=set)

    def taken_from(self, holder: object, busy: Container[int]) -> TakenPorts:
        """The ports ``holder`` may not have (see :class:`TakenPorts`)."""
        return TakenPorts(self.held, holder, busy, self.reserved)

    def choose(self, ports: range, holder: object = None,
               busy: Container[int] = frozenset(),
               in_use: Callable[[int], bool] | None = None, prefer: int | None = None,
               owner: str = "proactor") -> int:
        """
        A port of ``ports`` for ``holder``: ``prefer`` if it is one of them
        and usable, else the lowest usable one. Usable: not in
        :meth:`taken_from` (``holder``, ``busy``) and, if ``in_use`` is
        given, not ``in_use(port)`` (asked last: it may probe). Raise
        :class:`NoFreePort` (naming ``owner``) when none is left.
        """
        taken = self.taken_from(holder, busy)
        first = [prefer] if prefer is not None and prefer in ports else []
        for port in [*first, *ports]:
            if port not in taken and (in_use is None or not in_use(port)):
                return port
        raise NoFreePort(owner, ports.start, ports.stop - 1)

    def hold(self, holder: object, old: int, port: int) -> None:
        """``holder`` gives up ``old`` (if it held it) and holds ``port``."""
        self.release(holder, old)
        self.held[port] = holder

    def release(self, holder: object, port: int) -> None:
        """``holder`` gives up ``port``, if it held it."""
        if self.held.get(port) is holder:
            del self.held[port]


def _listen_ports(cfg: configparser.ConfigParser) -> set[int]:
    ports = set()
    for section in cfg.sections():
        value = cfg.get(section, "listen_port", fallback=None)
        if value and value.strip().isdigit():
            ports.add(int(value))
    return ports


def next_port(
    cfg: configparser.ConfigParser,
    guid: str,
    busy: Iterable[int] = frozenset(),
    in_use: Callable[[int], bool] | None = None,
    prefer: int | None = None,
) -> int:
    """
    The lowest port in ``[child_port_min, child_port_max]`` of section
    ``guid`` that is no section's ``listen_port``, not in ``busy``, and (when
    ``in_use`` is given) for which ``in_use(port)`` is false. ``prefer`` (a
    restarting job's last port) is taken first if it passes the same tests.

    Raise :class:`NoFreePort` when none is left.
    """
    low = cfg.getint(guid, "child_port_min")
    high = cfg.getint(guid, "child_port_max")
    book = PortBook(reserved=_listen_ports(cfg))
    return book.choose(range(low, high + 1), busy=frozenset(busy), in_use=in_use,
                       prefer=prefer, owner=guid)


def port_in_use(addr: str, port: int) -> bool:
    """
    True if something on this host holds ``addr:port``: a bind with
    SO_REUSEADDR (as the worker will use) fails with EADDRINUSE.
    """
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((addr, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise
    return False
