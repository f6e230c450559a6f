"""
A worker's line back to its initiator: :class:`ParentClient` posts events
and fetches the job's config; :class:`ApiError` and :class:`TransportError`
are what it raises.

The daemon's clients (:mod:`turberfield_twisted.cli.client`) are built on the
same pieces: :class:`JsonClient`, :func:`exchange`, :func:`error_message`
and :func:`make_http`. The worker runtime imports this module, so it
imports neither treq nor ``twisted.web.client``: :func:`make_http` and
:func:`exchange` import them when called, and a client given no ``http``
object builds one (with :func:`make_http`) on its first request.

Every call is bounded by ``timeout``; nothing here imports the reactor, and
no token is ever logged or put in an error message.
"""

from __future__ import annotations

import ipaddress
import json as _json
import socket
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, cast
from urllib.parse import urlsplit

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.internet.error import ConnectError, ConnectionLost
from twisted.internet.interfaces import IProtocol, IReactorTime
from twisted.logger import Logger

from turberfield_twisted.contract import bearer_header, config_path, events_path, listening_path
from turberfield_twisted.errors import ApiError, TransportError

if TYPE_CHECKING:
    from twisted.web.client import HTTPConnectionPool
    from twisted.web.http_headers import Headers

    from turberfield_twisted.worker.reactor import IClientReactor

__all__ = [
    "MAX_MESSAGE",
    "HttpClient",
    "HttpResponse",
    "JsonClient",
    "LazyHttp",
    "ParentClient",
    "error_message",
    "exchange",
    "listening_host",
    "make_http",
    "slurm_step",
]

#: Longest piece of a non-JSON error body kept in a message.
MAX_MESSAGE = 200


class HttpResponse(Protocol):
    """An answer, as a treq-like client gives it: what callers here read of it."""

    @property
    def code(self) -> int: ...

    @property
    def headers(self) -> Headers: ...

    def content(self) -> Deferred[bytes]: ...

    def deliverBody(self, protocol: IProtocol) -> None: ...


class HttpClient(Protocol):
    """
    A treq-like client: treq's ``HTTPClient`` (:func:`make_http` builds
    one), ``treq.testing.StubTreq``, or a test's fake. Keyword arguments
    are treq's (``headers``, ``json``, ``data``, ``params``, ``timeout``,
    ``reactor`` ...).
    """

    def request(self, method: str, url: str, **kwargs: Any) -> Deferred[HttpResponse]: ...

    def get(self, url: str, **kwargs: Any) -> Deferred[HttpResponse]: ...


def make_http(reactor: IClientReactor, persistent: bool = True, ca_pem: bytes | None = None
              ) -> tuple[HttpClient, HTTPConnectionPool]:
    """
    A treq ``HTTPClient`` on one ``HTTPConnectionPool`` of ``reactor``,
    whose connection factory does not log each connection, that reaches
    an IP address straight over TCP (:mod:`.agent`), and with a cookie
    jar that keeps nothing: the daemon shares this client between
    callers, so a cookie one worker sets must never go out again. Return
    the client and the pool (close it with ``closeCachedConnections``).
    An https server is checked against the CA(s) in ``ca_pem`` (PEM) if
    given, else against the system's store; never not checked.
    """
    from http.cookiejar import DefaultCookiePolicy

    from treq.client import HTTPClient
    from treq.cookies import IndexableCookieJar

    from turberfield_twisted.worker.agent import make_agent, quiet_pool

    pool = quiet_pool(reactor, persistent)
    jar = IndexableCookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))
    # treq types each keyword its methods take; callers here pass them through.
    agent = make_agent(reactor, pool, ca_pem=ca_pem)
    return cast(HttpClient, HTTPClient(agent, cookiejar=jar)), pool


class LazyHttp:
    """
    A treq-like client built with :func:`make_http` on its first request
    (treq and ``twisted.web.client`` are loaded then, not before); :meth:`close`
    closes its connections, if it was built.
    """

    def __init__(self, reactor: IClientReactor):
        self.reactor = reactor
        self._http: HttpClient | None = None
        self._pool: HTTPConnectionPool | None = None

    @property
    def built(self) -> bool:
        """Whether it has been used (and treq loaded)."""
        return self._http is not None

    def _client(self) -> HttpClient:
        if self._http is None:
            self._http, self._pool = make_http(self.reactor)
        return self._http

    def request(self, method: str, url: str, **kwargs: Any) -> Deferred[HttpResponse]:
        """treq's ``request``."""
        return self._client().request(method, url, **kwargs)

    def get(self, url: str, **kwargs: Any) -> Deferred[HttpResponse]:
        """treq's ``get``."""
        return self._client().get(url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> Deferred[HttpResponse]:
        """treq's ``post``."""
        return self._client().request("POST", url, **kwargs)

    def put(self, url: str, **kwargs: Any) -> Deferred[HttpResponse]:
        """treq's ``put``."""
        return self._client().request("PUT", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> Deferred[HttpResponse]:
        """treq's ``delete``."""
        return self._client().request("DELETE", url, **kwargs)

    def close(self) -> Deferred[None]:
        """Close its idle connections (nothing to do if it was never used)."""
        if self._pool is None:
            return succeed(None)
        return self._pool.closeCachedConnections()


def error_message(body: bytes, status: int) -> str:
    """The ``error`` of a JSON error body, else a short piece of its text."""
    try:
        parsed = _json.loads(body)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), str):
        return parsed["error"]
    text = body.decode("utf-8", errors="replace").strip().splitlines()
    return text[0][:MAX_MESSAGE] if text and text[0] else f"HTTP {status}"


async def exchange(
    http: HttpClient, reactor: IReactorTime, timeout: float, method: str, url: str,
    **kwargs: Any,
) -> tuple[int, str, bytes]:
    """
    One request and its whole body within ``timeout`` seconds: ``(status,
    content type, body)``. Raise :class:`TransportError` if it fails.
    """
    # Only a real request needs these, and ``http`` (treq) has loaded them.
    from twisted.web.client import RequestTransmissionFailed, ResponseFailed

    async def fetch() -> tuple[int, str, bytes]:
        response = await http.request(method, url, timeout=timeout, reactor=reactor, **kwargs)
        body = await response.content()
        ctype = response.headers.getRawHeaders(b"content-type", [b""])[0]
        return response.code, ctype.decode("latin-1"), body

    d = Deferred.fromCoroutine(fetch()).addTimeout(timeout, reactor)
    try:
        return await d
    except (CancelledError, DeferredTimeout, TimeoutError):
        raise TransportError(f"no answer from {_origin(url)} within {timeout:g}s") from None
    except (ConnectError, ConnectionLost, ResponseFailed, RequestTransmissionFailed,
            OSError) as exc:
        raise TransportError(f"cannot reach {_origin(url)}: {_describe(exc)}") from None


def _origin(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"


def _describe(exc: Exception) -> str:
    reasons = getattr(exc, "reasons", None)  # ResponseFailed and its kind hold failures
    if reasons:
        return "; ".join(sorted({r.getErrorMessage() for r in reasons})) or type(exc).__name__
    return str(exc) or type(exc).__name__


class JsonClient:
    """
    A JSON API at ``url`` called with ``token``: what every client here
    shares. ``http`` is a treq-like object; None builds one with
    :func:`make_http` on first use (checking an https server against
    ``ca_pem``, if given), whose connections :meth:`close` closes.
    """

    log = Logger()

    def __init__(self, http: HttpClient | None, url: str, token: str, reactor: IClientReactor,
                 timeout: float = 10.0, ca_pem: bytes | None = None):
        self._http = http
        self._ca_pem = ca_pem
        self._pool: HTTPConnectionPool | None = None
        self.url = url.rstrip("/")
        self._token = token
        self.reactor = reactor
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"

    @property
    def http(self) -> HttpClient:
        """The treq-like client: the one given, or one built now on first use."""
        if self._http is None:
            self._http, self._pool = make_http(self.reactor, ca_pem=self._ca_pem)
        return self._http

    def close(self) -> Deferred[None]:
        """Close the cached connections of a client built here (none for one given)."""
        if self._pool is None:
            return succeed(None)
        return self._pool.closeCachedConnections()

    async def _raw(
        self,
        method: str,
        path: str,
        json: object = None,
        params: Mapping[str, str] | None = None,
        auth: bool = True,
        data: bytes | None = None,
        content_type: str | None = None,
        timeout: float | None = None,
    ) -> tuple[int, str, bytes]:
        """
        One request: a ``json`` body, or raw ``data`` of ``content_type``;
        bounded by ``timeout`` (default the client's).
        """
        headers = bearer_header(self._token) if auth else {}
        if content_type is not None:
            headers[b"Content-Type"] = [content_type.encode("latin-1")]
        kwargs: dict[str, object] = {"headers": headers}
        if json is not None:
            kwargs["json"] = json
        if data is not None:
            kwargs["data"] = data
        if params:
            kwargs["params"] = params
        return await exchange(self.http, self.reactor, timeout or self.timeout, method,
                              self.url + path, **kwargs)

    async def _json(
        self, method: str, path: str, json: object = None,
        params: Mapping[str, str] | None = None, auth: bool = True,
        timeout: float | None = None,
    ) -> Any:
        """The JSON answer (None for an empty one); raise :class:`ApiError` for 4xx/5xx."""
        status, _, body = await self._raw(method, path, json, params, auth, timeout=timeout)
        if status >= 400:
            raise ApiError(status, error_message(body, status))
        if not body.strip():
            return None
        try:
            return _json.loads(body)
        except ValueError:
            raise ApiError(status, "the answer is not JSON") from None


class ParentClient(JsonClient):
    """
    A worker's client of its initiator at ``url``, called with the job's
    own ``token``. Errors are :class:`ApiError` (the initiator said no) or
    :class:`TransportError` (no answer).
    """

    def __init__(self, http: HttpClient | None, url: str, guid: str, token: str,
                 reactor: IClientReactor, timeout: float = 10.0, ca_pem: bytes | None = None):
        super().__init__(http, url, token, reactor, timeout, ca_pem)
        self.guid = guid

    async def post_event(self, name: str, data: object = None) -> None:
        """Tell the initiator of event ``name`` (with JSON ``data``)."""
        await self._json("POST", events_path(self.guid), json={"event": name, "data": data})

    async def listening(self, addr: str, port: int, env: Mapping[str, str]) -> str:
        """
        Tell the initiator this worker, bound to ``addr``:``port``, listens
        (it runs where the initiator can't hand it a ready fd, as on a Slurm
        node): at :func:`listening_host`, in the Slurm step that ``env``
        names. Return that host; raise OSError if it can't be found.
        """
        host = listening_host(addr, env, toward=urlsplit(self.url).hostname)
        body: dict[str, str | int] = {"host": host, "port": port}
        step = slurm_step(env)
        if step is not None:
            body["step"] = step
        await self._json("POST", listening_path(self.guid), json=body)
        self.log.info("job {guid}: told the initiator it listens on {host}:{port}",
                      guid=self.guid, host=host, port=port)
        return host

    async def fetch_config(self) -> dict[str, Any]:
        """This job's config as the initiator has it: ``{"guid", "default", "section"}``."""
        return await self._json("GET", config_path(self.guid))


def _route_from(toward: str, family: int) -> str | None:
    """This host's address on its route to ``toward`` (a UDP connect: nothing is sent)."""
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((toward, 9))
            return str(probe.getsockname()[0])
    except OSError:
        return None


def listening_host(listen_addr: str, env: Mapping[str, str],
                   resolve: Callable[..., Any] = socket.getaddrinfo,
                   toward: str | None = None) -> str:
    """
    The IP address where a worker bound to ``listen_addr`` is reached from
    elsewhere: ``listen_addr`` itself if it is one address; bound to all,
    this host's address on its route to ``toward`` (the daemon's host) if
    given, else what this node's name resolves to here (Slurm's
    ``SLURMD_NODENAME`` in ``env``, else the host name); a name, what it
    resolves to; in the family of ``listen_addr``. Raise OSError if the
    name does not resolve.
    """
    try:
        ip = ipaddress.ip_address(listen_addr)
    except ValueError:
        ip = None  # a name, such as localhost: resolved below
    if ip is not None and not ip.is_unspecified:
        return str(ip)
    family = socket.AF_INET6 if ip is not None and ip.version == 6 else socket.AF_INET
    routed = _route_from(toward, family) if ip is not None and toward else None
    if routed is not None:
        return routed
    name = listen_addr if ip is None else (env.get("SLURMD_NODENAME") or socket.gethostname())
    found = resolve(name, None, family, socket.SOCK_STREAM)
    if not found:
        raise OSError(f"{name} does not resolve")
    return str(found[0][4][0])


def slurm_step(env: Mapping[str, str]) -> str | None:
    """``JOBID.STEP`` of the Slurm job step this process runs in (from ``env``), or None."""
    job, step = env.get("SLURM_JOB_ID", ""), env.get("SLURM_STEP_ID", "")
    digits = all(part.isascii() and part.isdigit() for part in (job, step))
    return f"{job}.{step}" if digits else None
