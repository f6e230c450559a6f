"""
Process checks for end-to-end tests: wait for pids to exit (woken by a
pidfd per process, never by polling) and list what is still alive.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from twisted.internet import defer

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


def _exit_of(loop: Any, pid: int) -> defer.Deferred[None]:
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return defer.succeed(None)

    def close() -> None:
        loop.remove_reader(fd)
        os.close(fd)

    d: defer.Deferred[None] = defer.Deferred(lambda _: close())

    def readable() -> None:
        close()
        d.callback(None)

    loop.add_reader(fd, readable)
    return d


def wait_gone(reactor: Any, pids: Iterable[int], timeout: float = 10.0) -> defer.Deferred[Any]:
    """
    Fire once every pid has exited; fail with ``TimeoutError`` after
    ``timeout`` seconds. ``reactor`` is the asyncio reactor.
    """
    loop = reactor._asyncioEventloop
    d = defer.gatherResults([_exit_of(loop, pid) for pid in pids], consumeErrors=True)
    return d.addTimeout(timeout, reactor)
