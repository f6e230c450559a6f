"""
What an HTTP client here needs of its reactor, as a type:
:class:`IClientReactor`. Twisted declares a reactor's capabilities one
interface each; a client connects over TCP and times its requests, so it
needs two on the one reactor it is given.
"""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTCP, IReactorTime

__all__ = ["IClientReactor"]


class IClientReactor(IReactorTime, IReactorTCP):
    """
    Timers and TCP, for the type checker: no reactor declares this
    interface (ask ``IReactorTCP.providedBy``, say, never this one's), but
    every reactor Twisted installs provides both it extends.
    """
