"""
Port allocation: the lowest free port of an initiator's child range.
"""

from __future__ import annotations

import configparser
import errno
import socket
from collections.abc import Callable, Iterable

__all__ = ["NoFreePort", "next_port", "port_in_use"]


class NoFreePort(RuntimeError):
    """Every port of the child range is taken."""

    def __init__(self, guid: str, low: int, high: int):
        self.guid = guid
        self.low = low
        self.high = high
        super().__init__(f"no free port left in {low}-{high} (initiator {guid})")


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
    taken = _listen_ports(cfg) | set(busy)
    first = [prefer] if prefer is not None and low <= prefer <= high else []
    for port in [*first, *range(low, high + 1)]:
        if port in taken:
            continue
        if in_use is not None and in_use(port):
            continue
        return port
    raise NoFreePort(guid, low, high)


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
