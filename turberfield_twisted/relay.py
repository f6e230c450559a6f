"""
The relay: a request to ``/jobs/{guid}/<path>`` on the control API goes to
that job's worker, and the worker's answer comes back.

Hop-by-hop headers, ``Host`` and the caller's ``Authorization`` are not
passed on; redirects are not followed; the whole answer is bounded in
time and size.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_to_bytes

from twisted.internet import defer, error
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone, _WrapperException
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH

from .job import JobState

__all__ = ["NOT_RELAYED", "RELAY_STATES", "Relay", "RelayError"]

#: Request headers never relayed to a worker (lower case): hop-by-hop ones, the
#: caller's credentials and what the relay's own client sets.
NOT_RELAYED = frozenset({
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization",
    b"proxy-connection", b"te", b"trailer", b"trailers", b"transfer-encoding", b"upgrade",
    b"host", b"authorization", b"content-length", b"expect", b"accept-encoding",
})
#: Job states in which a worker may answer a relayed request.
RELAY_STATES = frozenset({JobState.STARTING, JobState.READY})


class RelayError(Exception):
    """The relay could not pass an answer back: ``status`` and a readable ``message``."""

    def __init__(self, status: int, message: str):
        self.status = status
        self.message = message
        super().__init__(status, message)


class _TooLarge(Exception):
    """A worker's answer is longer than the relay takes."""


class _Body(Protocol):
    """Collect a response body of at most ``limit`` bytes into ``done``."""

    def __init__(self, limit: int, expected: Any):
        self.limit = limit
        self.expected = expected
        self.chunks: list[bytes] = []
        self.size = 0
        self.done: Deferred[bytes] = Deferred(lambda _: self._abort())

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.stopProducing()  # type: ignore[attr-defined]

    def _too_large(self) -> None:
        self._abort()
        if not self.done.called:
            self.done.errback(_TooLarge())

    def connectionMade(self) -> None:
        if self.expected is not UNKNOWN_LENGTH and self.expected > self.limit:
            self._too_large()

    def dataReceived(self, data: bytes) -> None:
        if self.done.called:
            return
        self.size += len(data)
        if self.size > self.limit:
            self._too_large()
            return
        self.chunks.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.done.called:
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            self.done.callback(b"".join(self.chunks))
        else:
            self.done.errback(reason)


def _timed_out(exc: BaseException) -> bool:
    """True if ``exc`` says a request was cancelled or timed out."""
    if isinstance(exc, CancelledError | error.ConnectingCancelledError | error.TimeoutError
                  | defer.TimeoutError | TimeoutError):
        return True
    if isinstance(exc, _WrapperException):
        return any(_timed_out(reason.value) for reason in exc.reasons)
    return False


def upstream_path(request: Any) -> bytes:
    """The raw path after ``/jobs/{guid}``, with its query string."""
    path: bytes = request.path
    query = request.uri.partition(b"?")[2]
    rest = path.split(b"/", 3)[3] if path.count(b"/") >= 3 else b""
    for segment in rest.split(b"/"):
        if unquote_to_bytes(segment) in (b".", b".."):
            raise RelayError(400, "the path may not hold . or .. segments")
    if any(c < 0x21 or c > 0x7E for c in rest + query):
        raise RelayError(400, "the path or query is not plain ASCII")
    return b"/" + rest + (b"?" + query if query else b"")


def relay_headers(request: Any) -> Headers:
    """The request's headers less those never relayed and those named in Connection."""
    connection = request.requestHeaders.getRawHeaders(b"connection") or []
    named = {token.strip().lower() for value in connection for token in value.split(b",")}
    out = Headers()
    for name, values in request.requestHeaders.getAllRawHeaders():
        lower = name.lower()
        if lower in NOT_RELAYED or lower in named or lower.startswith(b"proxy-"):
            continue
        out.setRawHeaders(name, values)
    return out


class Relay:
    """
    Forward requests to workers over ``http`` (a treq client), giving each
    ``timeout`` seconds for its whole answer and at most ``max_response``
    bytes of it.
    """

    log = Logger()

    def __init__(self, http: Any, reactor: Any, timeout: float = 30.0,
                 max_response: int = 16 * 1024 * 1024):
        self.http = http
        self.reactor = reactor
        self.timeout = timeout
        self.max_response = max_response

    async def forward(self, request: Any, job: Any, base: str, body: bytes) -> bytes:
        """
        Send ``request`` (its method, path under the job, query, headers and
        ``body``) to ``job``'s worker at ``base`` (``http://ADDR:PORT``) and
        write its answer into ``request``; raise :class:`RelayError` (400,
        502, 504) if it can't.
        """
        guid = job.guid
        target = upstream_path(request)
        if job.state not in RELAY_STATES:
            raise RelayError(502, f"job {guid} is {job.state.value}, not running")
        url = base.encode("ascii") + target
        method = request.method.decode("ascii")
        started = self.reactor.seconds()
        try:
            response = await self.http.request(
                method, url, headers=relay_headers(request), data=body or None,
                allow_redirects=False, unbuffered=True,
                timeout=self.timeout, reactor=self.reactor,
            )
            collector = _Body(self.max_response, response.length)
            response.deliverBody(collector)
            left = max(0.001, self.timeout - (self.reactor.seconds() - started))
            content = await collector.done.addTimeout(left, self.reactor)
        except _TooLarge:
            self.log.warn("job {guid}: relayed answer over {limit} bytes", guid=guid,
                          limit=self.max_response)
            raise RelayError(502, "the worker's answer is too large") from None
        except Exception as exc:
            if _timed_out(exc):
                self.log.warn("job {guid}: no answer to a relayed {method} in {timeout}s",
                              guid=guid, method=method, timeout=self.timeout)
                raise RelayError(504, f"job {guid} did not answer in time") from None
            self.log.warn("job {guid}: relayed {method} failed: {why}", guid=guid, method=method,
                          why=type(exc).__name__)
            raise RelayError(502, f"job {guid} could not be reached") from None
        request.setResponseCode(response.code)
        kind = response.headers.getRawHeaders(b"content-type")
        if kind:
            request.setHeader(b"Content-Type", kind[-1])
        else:
            request.defaultContentType = None
        location = response.headers.getRawHeaders(b"location")
        if location:  # a path on the worker is a path under its job here
            where = location[-1]
            if where.startswith(b"/") and not where.startswith(b"//"):
                where = b"/jobs/" + request.path.split(b"/", 3)[2] + where
            request.setHeader(b"Location", where)
        return content
