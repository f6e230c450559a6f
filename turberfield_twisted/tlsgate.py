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

:func:`keep_out_stdlib_tls` keeps the standard library's TLS out for good:
``ssl``, ``_ssl`` and ``_hashlib`` (OpenSSL's libssl and libcrypto, 4.7 MiB
of a daemon's memory), which ``twisted.python.compat`` reaches through
``http.cookiejar`` and ``urllib.request``, each written to go on without
them (``hashlib`` then uses its own SHA-2 and MD5, ``hmac.compare_digest``
the interpreter's). The daemon's TLS is pyOpenSSL's, never the standard
library's. ``proactord`` calls it first, before Twisted is imported
(:mod:`turberfield_twisted.proactord`).

This module loads nothing but the import system: it is imported before
anything else of a daemon.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType

__all__ = ["STDLIB_TLS", "TLS_PACKAGE", "allow_tls", "defer_tls", "keep_out_stdlib_tls",
           "stdlib_tls_kept_out", "tls_deferred"]

#: The package kept out until TLS is used: pyOpenSSL (which brings cryptography with it).
TLS_PACKAGE = "OpenSSL"

#: The standard library's TLS and OpenSSL hashes, kept out of a daemon for good.
STDLIB_TLS = frozenset({"ssl", "_ssl", "_hashlib"})


class _Refusal(importlib.abc.MetaPathFinder):
    """Refuses to find the modules it :meth:`refuses`, saying ``why``: as if not installed."""

    why = ""

    def refuses(self, fullname: str) -> bool:
        """Whether module ``fullname`` is kept out."""
        raise NotImplementedError

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if self.refuses(fullname):
            raise ModuleNotFoundError(f"{fullname} {self.why}", name=fullname)
        return None


class _NotYet(_Refusal):
    """Keeps :data:`TLS_PACKAGE` (and its modules) out until :func:`allow_tls`."""

    why = "is not loaded until TLS is used"

    def refuses(self, fullname: str) -> bool:
        return fullname == TLS_PACKAGE or fullname.startswith(TLS_PACKAGE + ".")


class _Never(_Refusal):
    """Keeps the modules of :data:`STDLIB_TLS` out: as on a Python built without them."""

    why = "is kept out of this daemon (its TLS is pyOpenSSL's)"

    def refuses(self, fullname: str) -> bool:
        return fullname in STDLIB_TLS


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


def keep_out_stdlib_tls() -> bool:
    """
    Keep :data:`STDLIB_TLS` out of this process for good; False if one of
    them is loaded already (then nothing changes). Call it before Twisted
    is imported.
    """
    if STDLIB_TLS & set(sys.modules):
        return False
    if not stdlib_tls_kept_out():
        sys.meta_path.insert(0, _Never())
    return True


def stdlib_tls_kept_out() -> bool:
    """Whether :data:`STDLIB_TLS` is kept out of this process."""
    return any(isinstance(finder, _Never) for finder in sys.meta_path)
