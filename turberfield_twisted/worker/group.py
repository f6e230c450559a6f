"""
The end of a worker's process group. A worker leads a process group of its
own, and what it starts (``subprocess.Popen`` ...) is in it. The daemon
signals that group when it stops a job; when the daemon is gone (the
lifeline reached EOF) no one would, so the worker does it itself before it
exits: :func:`end_group` sends SIGTERM to the group, waits up to
:data:`GRACE` seconds for the others to exit, and sends SIGKILL to each one
left.
"""

from __future__ import annotations

import os
import signal

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from zope.interface import Interface, implementer

__all__ = ["GRACE", "INTERVAL", "IProcessGroup", "OwnGroup", "end_group", "group_members"]

#: Seconds the rest of the group has to exit after SIGTERM, before SIGKILL.
GRACE = 2.0

#: Seconds between two looks at who is left, meanwhile.
INTERVAL = 0.05


def group_members(pgid: int) -> list[int]:
    """The live pids of process group ``pgid`` (from ``/proc``; a zombie has exited)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if fields[0] != b"Z" and int(fields[2]) == pgid:
            found.append(int(entry))
    return found


class IProcessGroup(Interface):
    """A process group as :func:`end_group` sees it."""

    def leads() -> bool:
        """Whether this process leads the group (else it is not ours to end)."""

    def others() -> list[int]:
        """The live members of the group, this process left out."""

    def terminate() -> None:
        """SIGTERM to the whole group, but this process."""

    def kill(pid: int) -> None:
        """SIGKILL to ``pid``, if it is still there."""


@implementer(IProcessGroup)
class OwnGroup:
    """The process group of this process, whose id is its pid if it leads it."""

    def __init__(self) -> None:
        self.pid = os.getpid()

    def leads(self) -> bool:
        return os.getpgid(0) == self.pid

    def others(self) -> list[int]:
        return [pid for pid in group_members(self.pid) if pid != self.pid]

    def terminate(self) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # exiting already: TERM is for the others
        try:
            os.killpg(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass

    def kill(self, pid: int) -> None:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def end_group(reactor: IReactorTime, group: IProcessGroup | None = None, grace: float = GRACE,
              interval: float = INTERVAL) -> Deferred[list[int]]:
    """
    End the other processes of ``group`` (by default this process's own):
    SIGTERM to the group, then SIGKILL to each one still there ``grace``
    seconds later (looking every ``interval`` seconds on ``reactor``). Fire
    with the pids that needed SIGKILL; at once with none if this process
    leads no group, or is alone in it.
    """
    group = OwnGroup() if group is None else group
    if not group.leads() or not group.others():
        return succeed([])
    group.terminate()
    deadline = reactor.seconds() + grace
    done: Deferred[list[int]] = Deferred()

    def look() -> None:
        left = group.others()
        if left and reactor.seconds() < deadline:
            return
        for pid in left:
            group.kill(pid)
        watch.stop()
        done.callback(left)

    watch = LoopingCall(look)
    watch.clock = reactor
    watch.start(interval, now=False)
    return done
