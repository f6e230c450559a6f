"""
The reactor the daemon runs on, as a type: :class:`IDaemonReactor`.

Twisted declares what a reactor does in one interface per capability;
the daemon's parts use several of them on the one reactor it is given
(timers and TCP, as every HTTP client here: :class:`IClientReactor`;
processes, file descriptors, calls from a signal handler's thread). The
asyncio reactor provides each. A part that needs only one
takes that one (a lifecycle takes an ``IReactorTime``, say).
"""

from __future__ import annotations

from twisted.internet.interfaces import IReactorFDSet, IReactorFromThreads, IReactorProcess

from turberfield_twisted.worker.reactor import IClientReactor

__all__ = ["IDaemonReactor"]


class IDaemonReactor(IClientReactor, IReactorProcess, IReactorFDSet, IReactorFromThreads):
    """
    Every capability of a reactor the daemon uses, for the type checker: no
    reactor declares this interface (ask ``IReactorProcess.providedBy``,
    say, never this one's), but the asyncio reactor provides all it extends.
    """
