"""
:class:`WorkerClient`: treq's request functions bound to one worker, so a
test says ``await client.get("/")``; the same for a worker in memory (the
harness's) and one in a process (the real-process fixture's).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed

__all__ = ["WorkerClient", "real_client"]


class WorkerClient:
    """
    Requests to the worker at ``url`` through ``http`` (a treq-like
    client), each with ``timeout`` (seconds) and ``reactor`` unless the
    call gives its own; keyword arguments are treq's (``json=``,
    ``data=``, ``headers=``, ``params=`` ...). Each returns a Deferred
    that fires with treq's response (``.code``, ``await .json()``,
    ``await .text()``, ``await .content()``).
    """

    def __init__(self, http: Any, url: str, reactor: Any, timeout: float = 10.0,
                 pool: Any = None):
        self.http = http
        self.url = url.rstrip("/")
        self.reactor = reactor
        self.timeout = timeout
        self._pool = pool

    def __repr__(self) -> str:
        return f"<WorkerClient {self.url}>"

    def request(self, method: str, path: str = "/", **kwargs: Any) -> Deferred[Any]:
        """``method`` on ``path`` (from ``/``) of the worker."""
        kwargs.setdefault("timeout", self.timeout)
        kwargs.setdefault("reactor", self.reactor)
        result: Deferred[Any] = self.http.request(method, self.url + path, **kwargs)
        return result

    def get(self, path: str = "/", **kwargs: Any) -> Deferred[Any]:
        """GET ``path``."""
        return self.request("GET", path, **kwargs)

    def head(self, path: str = "/", **kwargs: Any) -> Deferred[Any]:
        """HEAD ``path``."""
        return self.request("HEAD", path, **kwargs)

    def post(self, path: str = "/", **kwargs: Any) -> Deferred[Any]:
        """POST to ``path``."""
        return self.request("POST", path, **kwargs)

    def put(self, path: str = "/", **kwargs: Any) -> Deferred[Any]:
        """PUT ``path``."""
        return self.request("PUT", path, **kwargs)

    def patch(self, path: str = "/", **kwargs: Any) -> Deferred[Any]:
        """PATCH ``path``."""
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str = "/", **kwargs: Any) -> Deferred[Any]:
        """DELETE ``path``."""
        return self.request("DELETE", path, **kwargs)

    def close(self) -> Deferred[None]:
        """Close the connections this client keeps (none for one in memory)."""
        if self._pool is None:
            return succeed(None)
        pool, self._pool = self._pool, None
        closed: Deferred[None] = pool.closeCachedConnections()
        return closed


def real_client(reactor: Any, url: str, timeout: float = 10.0) -> WorkerClient:
    """
    A :class:`WorkerClient` over real HTTP: treq on a connection pool of
    its own (closed by :meth:`WorkerClient.close`), keeping cookies as a
    browser would.
    """
    from treq.client import HTTPClient

    from ..agent import make_agent, quiet_pool

    pool = quiet_pool(reactor)
    return WorkerClient(HTTPClient(make_agent(reactor, pool)), url, reactor, timeout, pool)
