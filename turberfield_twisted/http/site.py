"""
The control API's site: each connection starts with the API's front
(:class:`~.front.ApiFront`, which reads relayed requests itself), and
is handed to an :class:`~.channel.ApiChannel` at its first other request.
On a channel, relayed requests skip the router (and the access log),
everything else is the router's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import IO, Any, Protocol

from twisted.internet import defer
from twisted.internet.interfaces import IAddress, IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from turberfield_twisted.access.audit import AuditTrail
from turberfield_twisted.access.gate import Gate, caller_of, remote_of
from turberfield_twisted.access.roles import Throttled
from turberfield_twisted.http.channel import ApiChannel
from turberfield_twisted.http.front import ApiFront
from turberfield_twisted.http.relay import Answer, Relayed
from turberfield_twisted.http.upstream import Mount
from turberfield_twisted.http.web import answer_error, check_body, log_error
from turberfield_twisted.worker.wire import RawHeaders

__all__ = ["ApiSite", "RelayFirst", "RelayTo", "RequestAnswer", "relay_request"]

#: A request body up to this long is read into memory; a longer one is sent from its file.
_ONE_WRITE = 256 * 1024


#: What a request to relay gives once it may be relayed: its headers, body and length.
Take = Callable[[], tuple[RawHeaders, "bytes | IO[bytes]", int]]


class RelayTo(Protocol):
    """
    ``relay_to(request, mount, name, answer, take)``: check ``request`` and
    relay it under ``mount`` to what ``name`` chooses, its answer into
    ``answer`` (``take()`` gives its headers and body once it may go):
    raise what the API answers, or return the relay's Deferred.
    """

    def __call__(self, request: Relayed, mount: Mount, name: str, answer: Answer,
                 take: Take) -> defer.Deferred[int | str]: ...


class RequestAnswer:
    """A relayed answer written into a Twisted request (which its resource finishes)."""

    def __init__(self, request: Any):
        self.request = request
        self._streaming = False

    def _head(self, status: int, headers: RawHeaders, length: int | None) -> None:
        request = self.request
        request.setResponseCode(status)
        if not any(name == b"Content-Type" for name, _ in headers):
            request.defaultContentType = None
        for name, value in headers:
            request.setHeader(name, value)
        if length is not None and request.method != b"HEAD" and status not in (204, 304):
            request.setHeader(b"Content-Length", b"%d" % length)

    def whole(self, status: int, headers: RawHeaders, body: bytes) -> None:
        """See :meth:`~.relay.Answer.whole`."""
        self._head(status, headers, len(body))
        self.request.write(body)

    def start(self, status: int, headers: RawHeaders, length: int | None) -> None:
        """See :meth:`~.relay.Answer.start`."""
        self._head(status, headers, length)

    def write(self, data: bytes) -> None:
        """See :meth:`~.relay.Answer.write`."""
        self.request.write(data)

    def finish(self) -> None:
        """See :meth:`~.relay.Answer.finish`: the resource finishes the request."""

    def abort(self) -> None:
        """See :meth:`~.relay.Answer.abort`."""
        channel = self.request.channel
        if channel is not None:
            channel.transport.abortConnection()

    def stream_from(self, producer: IPushProducer | None) -> None:
        """See :meth:`~.relay.Answer.stream_from`."""
        request = self.request
        if producer is not None and not self._streaming:
            self._streaming = True
            request.registerProducer(producer, True)
        elif producer is None and self._streaming:
            self._streaming = False
            # A caller that went away has no channel left (Twisted clears it first).
            if request.channel is not None and request.producer is not None:
                request.unregisterProducer()


def relay_request(relay_to: RelayTo, request: Any, mount: Mount, name: str,
                  max_body: int) -> defer.Deferred[bytes]:
    """
    Relay a Twisted ``request`` (its body over ``max_body`` is 413): fires
    with ``b""`` once the answer is written (the resource finishes it).
    """

    def take() -> tuple[RawHeaders, bytes | IO[bytes], int]:
        length = check_body(request, max_body)
        request.relayed = True  # the site leaves it out of its access log
        headers = [(name, value) for name, values in request.requestHeaders.getAllRawHeaders()
                   for value in values]
        content = request.content
        if content is None or length == 0:
            return headers, b"", 0
        content.seek(0)
        return headers, (content.read() if length <= _ONE_WRITE else content), length

    done = relay_to(request, mount, name, RequestAnswer(request), take)
    return done.addCallback(lambda _: b"")


class RelayFirst(Resource):
    """
    The API's root on a channel: a request under one of ``mounts``
    (``/jobs/{guid}/proxy/...``) goes straight to ``relay_to``;
    everything else to ``routes`` (the router, which would route the
    jobs' there too). Errors are answered from the one table, logged on
    ``log``. A request carrying a token from an address the ``gate``
    makes wait is answered 429 here, before any routing: a run of wrong
    tokens costs the daemon little.
    """

    isLeaf = True

    def __init__(self, relay_to: RelayTo, mounts: list[Mount], log: Logger, routes: Resource,
                 max_body: int, gate: Gate | None = None):
        super().__init__()
        self.relay_to = relay_to
        self.mounts = mounts
        self.log = log
        self.routes = routes
        self.max_body = max_body
        self.gate = gate

    def render(self, request: Any) -> Any:
        if self.gate is not None and request.getHeader(b"authorization"):
            try:
                self.gate.check_throttle(request)
            except Throttled as exc:
                return answer_error(request, exc)
        if getattr(request, "too_large", False):
            return self.routes.render(request)
        for mount in self.mounts:
            match = mount.pattern.match(request.path)
            if match is not None:
                break
        else:
            return self.routes.render(request)
        gone = False

        def lost(_: Failure) -> None:
            nonlocal gone
            gone = True  # the caller went away: nothing is written to it
            d.cancel()

        d = defer.maybeDeferred(relay_request, self.relay_to, request, mount,
                                match.group(1).decode("ascii"), self.max_body)
        d.addErrback(lambda failure: _answered_error(self.log, request, failure))
        d.addCallback(lambda body: None if gone else _finish(request, body))
        request.notifyFinish().addErrback(lost)
        return NOT_DONE_YET


def _answered_error(log: Logger, request: Any, failure: Failure) -> bytes:
    if failure.check(defer.CancelledError):
        return b""  # the caller went away
    log_error(log, request, failure)
    assert failure.value is not None
    return answer_error(request, failure.value)


def _finish(request: Any, body: bytes) -> None:
    if request.finished:
        return
    if body:
        request.write(body)
    request.finish()


class ApiSite(Site):
    """
    A Site whose connections start with an :class:`~.front.ApiFront`
    (relayed requests read as bytes), then are an
    :class:`~.channel.ApiChannel`'s (408, 414, 431) from their first
    other request; its access log leaves out relayed requests.
    ``read_timeout`` is the seconds a caller has to send a whole request
    (None: no bound); ``mounts``, ``relay_to`` and ``max_body`` are the
    relay's (see :class:`RelayFirst`). Each answered request, by either
    way, is told to the ``gate`` (a 401 counts against its address) and,
    if it changed something or was refused, kept in the ``audit`` trail
    (a job's own successful calls are not: they are its worker's traffic).
    """

    # Twisted types it as its HTTP/2-choosing wrapper, of no use here without TLS's ALPN.
    protocol = ApiChannel  # type: ignore[assignment]
    read_timeout: float | None = None
    max_body: int = 1024 * 1024
    gate: Gate | None = None
    audit: AuditTrail | None = None

    def __init__(self, resource: Resource, relay_to: RelayTo | None = None,
                 mounts: list[Mount] | None = None, **kwargs: Any):
        super().__init__(resource, **kwargs)
        self.relay_to = relay_to
        #: Relayed paths (none: every request goes to the channel).
        self.mounts: list[Mount] = mounts if mounts is not None else []

    def buildProtocol(self, addr: IAddress) -> ApiFront:  # type: ignore[override]
        """The front of a new connection (see the module)."""
        return ApiFront(self, addr)

    def channel(self, addr: IAddress) -> ApiChannel:
        """A channel for a connection the front hands over."""
        channel = Site.buildProtocol(self, addr)
        assert isinstance(channel, ApiChannel)
        return channel

    def log(self, request: Any) -> None:
        if not getattr(request, "relayed", False):
            super().log(request)
        status = int(request.code)
        if self.gate is not None:
            self.gate.refused(request, status)
        audit = self.audit
        method = (request.method or b"?").decode("ascii", "replace")
        if audit is not None and audit.wanted(method, status) and not (
                status < 400 and getattr(request, "job_caller", None) is not None):
            caller = caller_of(request)
            path = (request.path or b"").decode("utf-8", "replace")
            audit.record(caller.name if caller else "-", caller.role.value if caller else "-",
                         remote_of(request), method, path, status)
