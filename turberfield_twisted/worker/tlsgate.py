"""
TLS code kept out of a process until it is used.

Twisted loads pyOpenSSL, and with it cryptography, wherever it can:
``twisted.internet.tcp`` (for ``startTLS``), ``twisted.internet.endpoints``
and ``twisted.web.client`` import it as they are imported, whether or not
TLS is ever spoken (13 MiB of a daemon's memory, and 30 to 60 ms of its
start). Each is written for a host without pyOpenSSL: it goes on without
its TLS parts.

:func:`defer_tls`, called before the reactor is imported, makes ``import
OpenSSL`` fail in this process as it would on such a host (an entry of
``sys.meta_path``, the import system's own hook), so those modules load
without it. :func:`allow_tls` lifts that: the daemon's one client that may
meet an ``https`` URL (:class:`~turberfield_twisted.worker.agent.LiteralIPEndpoints`)
does so as it builds its TLS from ``twisted.internet.ssl`` and
``twisted.protocols.tls``, loaded then. ``twistd proactor`` defers TLS
unless its config asks for TLS (an ``ssl:`` endpoint, ``hook_ca``,
``tls_ca``, ``tls_client_ca``); workers never do.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType

__all__ = ["TLS_PACKAGE", "allow_tls", "defer_tls", "tls_deferred"]

#: The package kept out: pyOpenSSL (which brings cryptography with it).
TLS_PACKAGE = "OpenSSL"


class _NotYet(importlib.abc.MetaPathFinder):
    """Refuses to find :data:`TLS_PACKAGE` (and its modules): as if it were not installed."""

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname == TLS_PACKAGE or fullname.startswith(TLS_PACKAGE + "."):
            raise ModuleNotFoundError(f"{fullname} is not loaded until TLS is used",
                                      name=fullname)
        return None


def _finder() -> _NotYet | None:
    return next((finder for finder in sys.meta_path if isinstance(finder, _NotYet)), None)


def defer_tls() -> bool:
    """
    Keep pyOpenSSL out of this process until :func:`allow_tls`; False if it
    is loaded already (then nothing changes).
    """
    if TLS_PACKAGE in sys.modules:
        return False
    if _finder() is None:
        sys.meta_path.insert(0, _NotYet())
    return True


def tls_deferred() -> bool:
    """Whether pyOpenSSL is being kept out of this process."""
    return _finder() is not None


def allow_tls() -> None:
    """Let pyOpenSSL be imported from now on (a client about to speak TLS)."""
    finder = _finder()
    if finder is not None:
        sys.meta_path.remove(finder)
