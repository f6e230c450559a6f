"""
:class:`WorkerClient`: treq's request functions bound to one worker, so a
test says ``await client.get("/")``; the same for a worker in memory (the
harness's) and one in a process (the real-process fixture's).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred

from turberfield_twisted.worker.parent import JsonClient

__all__ = ["WorkerClient", "real_client"]


def _verb(method: str) -> Callable[..., Deferred[Any]]:
    def call(self: WorkerClient, path: str = "/", **kwargs: Any) -> Deferred[Any]:
        return self.request(method, path, **kwargs)

    call.__name__ = method.lower()
    call.__doc__ = f"{method} ``path`` (see :meth:`WorkerClient.request`)."
    return call


class WorkerClient(JsonClient):
    """
    Requests to the worker at ``url`` through ``http`` (a treq-like
    client), each with ``timeout`` (seconds) and ``reactor`` unless the
    call gives its own; keyword arguments are treq's (``json=``,
    ``data=``, ``headers=``, ``params=`` ...). ``get``, ``head``,
    ``post``, ``put``, ``patch`` and ``delete`` each return a Deferred
    that fires with treq's response (``.code``, ``await .json()``,
    ``await .text()``, ``await .content()``). :meth:`close` closes
    ``pool``, if it is given.
    """

    def __init__(self, http: Any, url: str, reactor: Any, timeout: float = 10.0,
                 pool: Any = None):
        super().__init__(http, url, "", reactor, timeout)
        self._pool = pool

    def request(self, method: str, path: str = "/", **kwargs: Any) -> Deferred[Any]:
        """``method`` on ``path`` (from ``/``) of the worker."""
        kwargs.setdefault("timeout", self.timeout)
        kwargs.setdefault("reactor", self.reactor)
        result: Deferred[Any] = self.http.request(method, self.url + path, **kwargs)
        return result

    get = _verb("GET")
    head = _verb("HEAD")
    post = _verb("POST")
    put = _verb("PUT")
    patch = _verb("PATCH")
    delete = _verb("DELETE")


def real_client(reactor: Any, url: str, timeout: float = 10.0) -> WorkerClient:
    """
    A :class:`WorkerClient` over real HTTP: treq on a connection pool of
    its own (closed by :meth:`WorkerClient.close`), keeping cookies as a
    browser would.
    """
    from treq.client import HTTPClient

    from turberfield_twisted.worker.agent import make_agent, quiet_pool

    pool = quiet_pool(reactor)
    return WorkerClient(HTTPClient(make_agent(reactor, pool)), url, reactor, timeout, pool)
