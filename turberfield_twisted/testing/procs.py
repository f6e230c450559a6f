"""
Process checks for end-to-end tests: wait for pids to exit (woken by a
pidfd per process, never by polling) and list what is still alive.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IReadDescriptor
from twisted.python.failure import Failure
from zope.interface import implementer

__all__ = ["children_of", "group_members", "pid_alive", "wait_gone"]


def _stat(pid: int | str) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"


def _live(match: int, index: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(entry)
            if fields is not None and fields[0] != "Z" and int(fields[index]) == match:
                found.append(int(entry))
    return found


def group_members(pgid: int) -> list[int]:
    """Live pids in process group ``pgid``."""
    return _live(pgid, 2)


def children_of(pid: int) -> list[int]:
    """Live child processes of ``pid``."""
    return _live(pid, 1)


@implementer(IReadDescriptor)
class _PidFD:
    """A process's pidfd in the reactor: readable once the process has exited."""

    def __init__(self, reactor: Any, fd: int):
        self._reactor, self._fd = reactor, fd
        self.exited: defer.Deferred[None] = defer.Deferred(lambda _: self.close())

    def fileno(self) -> int:
        return self._fd

    def logPrefix(self) -> str:
        return "pidfd"

    def doRead(self) -> None:
        self.close()
        self.exited.callback(None)

    def connectionLost(self, reason: Any) -> None:
        pass

    def close(self) -> None:
        if self._fd >= 0:
            self._reactor.removeReader(self)
            os.close(self._fd)
            self._fd = -1


def _exit_of(reactor: Any, pid: int) -> defer.Deferred[None]:
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return defer.succeed(None)
    watch = _PidFD(reactor, fd)
    reactor.addReader(watch)
    return watch.exited


def wait_gone(reactor: Any, pids: Iterable[int], timeout: float = 10.0) -> defer.Deferred[Any]:
    """
    Fire once every pid has exited; fail with ``TimeoutError`` after
    ``timeout`` seconds. ``reactor`` is any reactor that watches file
    descriptors (each exit is seen on a pidfd).
    """
    d = defer.gatherResults([_exit_of(reactor, pid) for pid in pids], consumeErrors=True)
    d.addErrback(_first)
    return d.addTimeout(timeout, reactor)


def _first(failure: Failure) -> Failure:
    """The cancel inside a gathered failure: the timeout turns it into ``TimeoutError``."""
    if isinstance(failure.value, defer.FirstError):
        return failure.value.subFailure
    return failure
