"""
Free loopback port ranges for tests that run real workers.

:func:`free_ports` finds a block of ports that nothing on this host holds
(each is probed with a bind, as a worker would bind it) and holds it for
this process until :meth:`PortRange.release`: a lock file per block of
:data:`GRAIN` ports, so that test runs going on side by side never hand
out the same ports. The blocks are looked for below 32768 (out of Linux's
ephemeral range, where the kernel picks the local ports of outgoing
connections), in the window :data:`WINDOW_ENV` names if it is set.
"""

from __future__ import annotations

import fcntl
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import attrs

from turberfield_twisted.launch.ports import port_in_use

__all__ = ["DEFAULT_WINDOW", "GRAIN", "WINDOW_ENV", "NoFreeRange", "PortRange", "free_ports"]

#: Ports are held in blocks of this many.
GRAIN = 10
#: Where :func:`free_ports` looks unless told: ``LOW-HIGH`` (both included).
WINDOW_ENV = "TURBERFIELD_TWISTED_PORTS"
#: Where it looks when that is not set either.
DEFAULT_WINDOW = (20000, 32767)


class NoFreeRange(Exception):
    """No block of the window is free: every one is held, or has a port in use."""


@attrs.define(eq=False)
class PortRange:
    """Ports ``low`` to ``high`` (both included), held until :meth:`release`."""

    low: int
    high: int
    _locks: list[int] = attrs.field(factory=list, repr=False)

    @property
    def ports(self) -> range:
        """The ports, as a range."""
        return range(self.low, self.high + 1)

    def release(self) -> None:
        """Let other test runs have these ports again."""
        locks, self._locks = self._locks, []
        for fd in locks:
            os.close(fd)

    def __enter__(self) -> PortRange:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _window(text: str | None) -> tuple[int, int]:
    if not text:
        return DEFAULT_WINDOW
    try:
        low, high = (int(part) for part in text.split("-"))
    except ValueError:
        raise ValueError(f"{WINDOW_ENV} must be LOW-HIGH, e.g. 27500-27999") from None
    if not 1024 <= low <= high <= 65535:
        raise ValueError(f"{WINDOW_ENV} must be LOW-HIGH with 1024 <= LOW <= HIGH <= 65535")
    return low, high


def _lock_dir() -> Path:
    path = Path(tempfile.gettempdir()) / f"turberfield-twisted-ports-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    if path.is_symlink() or path.stat().st_uid != os.getuid():
        raise RuntimeError(f"{path} is not this user's own directory")
    return path


def _lock(path: Path) -> int | None:
    """An fd holding ``path``'s lock, or None if another process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def free_ports(size: int = 20, window: tuple[int, int] | None = None,
               addr: str = "127.0.0.1") -> PortRange:
    """
    Hold ``size`` consecutive free ports (rounded up to a multiple of
    :data:`GRAIN`) of ``window`` (default: ``$TURBERFIELD_TWISTED_PORTS``,
    else 20000-32767) on ``addr``. Blocks are tried in a random order.
    Raise :class:`NoFreeRange` if none is free.
    """
    low, high = window or _window(os.environ.get(WINDOW_ENV))
    grains = max(1, -(-size // GRAIN))
    first = -(-low // GRAIN)  # the first whole block of the window
    starts = [n * GRAIN for n in range(first, (high + 1) // GRAIN - grains + 1)]
    random.shuffle(starts)
    where = _lock_dir()
    for start in starts:
        held = PortRange(start, start + grains * GRAIN - 1)
        for block in range(start, held.high + 1, GRAIN):
            fd = _lock(where / f"{block}.lock")
            if fd is None:
                break
            held._locks.append(fd)
        else:
            if not any(port_in_use(addr, port) for port in held.ports):
                return held
        held.release()
    raise NoFreeRange(f"no {grains * GRAIN} free ports in a row in {low}-{high}")
