"""
The relay: a request to ``/jobs/{guid}/proxy/<path>`` on the control API goes to
that job's worker, and the worker's answer comes back.

It talks to workers through a plain Twisted ``Agent`` (no treq, so no
per-request URL object) whose connections go straight to the worker's IP
address (:mod:`turberfield_twisted.worker.agent`), on a pool that keeps as many idle connections
per worker as the relay has seen requests in flight to one at once. The
request body goes up from the file the server kept it in; the answer
comes back as it arrives: a short one (up to :data:`HOLD` bytes) whole,
so that an error or a timeout can still be answered as 502 or 504, a
longer one streamed, with the caller's connection as its flow control.

Hop-by-hop headers, ``Host`` and the caller's ``Authorization`` are not
passed on: the job's own token goes in its place (a worker that listens
beyond loopback asks for it); redirects are not followed; the whole answer is bounded in
time and size (past the bound, a streamed answer is cut off).

A worker's ``Location`` is resolved against the URL it was asked for. One
on the worker's own origin (a path, a relative reference, or an absolute
URL naming the worker's own address and port) becomes the same path under
the job's proxy, ``/jobs/{guid}/proxy/...``. One that leaves it (another
host or port, ``//host/...``, ``https:host``, another scheme) is not passed
on: the whole answer is refused as 502, logged with the job's guid, since a
redirect without its target is no answer, and the API's origin must not
send its callers elsewhere.
"""

from __future__ import annotations

import collections
from typing import Any

from twisted.internet import defer, error
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.task import Cooperator
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import (
    FileBodyProducer,
    RequestGenerationFailed,
    RequestTransmissionFailed,
    ResponseDone,
    ResponseFailed,
)
from twisted.web.http import PotentialDataLoss
from twisted.web.iweb import UNKNOWN_LENGTH, IBodyProducer
from zope.interface import implementer

from turberfield_twisted.http.rewrite import relay_headers, under_proxy, upstream_path
from turberfield_twisted.jobs.job import JobState

__all__ = ["CLOSED", "HOLD", "RELAY_STATES", "Relay", "RelayError"]

#: Job states in which a worker may answer a relayed request.
RELAY_STATES = frozenset({JobState.STARTING, JobState.READY})


#: How much of an answer is held before it is streamed: an answer up to this
#: long is sent whole, once it is complete.
HOLD = 64 * 1024


#: Idle connections kept per worker: at least this, at most ``MAX_PER_HOST``.
MIN_PER_HOST, MAX_PER_HOST = 4, 64


#: A request body up to this long is sent in one write.
_ONE_WRITE = 256 * 1024


#: What a relayed request is counted as when its caller went away before its answer ended.
CLOSED = "closed"


class RelayError(Exception):
    """The relay could not pass an answer back: ``status`` and a readable ``message``."""

    def __init__(self, status: int, message: str):
        self.status = status
        self.message = message
        super().__init__(status, message)


class _TooLarge(Exception):
    """A worker's answer is longer than the relay takes."""


class _LeavesOrigin(Exception):
    """A worker's ``Location`` points away from the worker's own origin."""

    def __init__(self, location: bytes):
        self.location = location
        super().__init__(location)


class _Discard(Protocol):
    """Take no answer body: stop the worker's connection at once (it is not reused)."""

    def connectionMade(self) -> None:
        if self.transport is not None:
            self.transport.stopProducing()  # type: ignore[attr-defined]


@implementer(IBodyProducer)
class _Bytes:
    """A request body already in memory, written whole at once (nothing to pause)."""

    def __init__(self, data: bytes):
        self._data = data
        self.length = len(data)

    def startProducing(self, consumer: Any) -> Deferred[None]:
        consumer.write(self._data)
        return succeed(None)

    def _idle(self) -> None:
        """Written whole already: pausing, resuming or stopping changes nothing."""

    pauseProducing = resumeProducing = stopProducing = _idle


class _Answer(Protocol):
    """
    Pass a worker's answer body into ``request``: hold up to ``hold`` bytes,
    then write what it holds and stream the rest (``committed``), pausing
    the worker while the caller is slow. ``done`` fires when the body has
    ended; it fails with :class:`_TooLarge` past ``limit`` bytes.
    """

    def __init__(self, request: Any, limit: int, hold: int, expected: Any,
                 commit: Any):
        self.request = request
        self.limit = limit
        self.hold = hold
        self.expected = expected
        self._commit = commit
        self.held: list[bytes] = []
        self.size = 0
        self.committed = False
        self.done: Deferred[None] = Deferred(lambda _: self._stop())

    def _stop(self) -> None:
        if self.transport is not None:
            self.transport.stopProducing()  # type: ignore[attr-defined]
        self._unregister()

    def _unregister(self) -> None:
        # A caller that went away has no channel left (Twisted clears it first).
        if self.committed and self.request.channel is not None \
                and self.request.producer is not None:
            self.request.unregisterProducer()

    def _fail(self, reason: Any) -> None:
        self._stop()
        if not self.done.called:
            self.done.errback(reason)

    def connectionMade(self) -> None:
        if self.expected is not UNKNOWN_LENGTH and self.expected > self.limit:
            self._fail(_TooLarge())

    def dataReceived(self, data: bytes) -> None:
        if self.done.called:
            return
        self.size += len(data)
        if self.size > self.limit:
            self._fail(_TooLarge())
            return
        if self.committed:
            self.request.write(data)
            return
        self.held.append(data)
        if self.size > self.hold:
            self.committed = True
            self._commit()
            self.request.registerProducer(self.transport, True)
            for chunk in self.held:
                self.request.write(chunk)
            self.held = []

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.done.called:
            return
        self._unregister()
        if reason.check(ResponseDone, PotentialDataLoss):
            self.done.callback(None)
        else:
            self.done.errback(reason)


def _printable(data: bytes) -> str:
    """``data`` as text for the log: printable ASCII as it is, anything else escaped."""
    return "".join(c if " " <= c <= "~" else f"\\x{ord(c):02x}" for c in data.decode("latin-1"))


def _timed_out(exc: BaseException) -> bool:
    """True if ``exc`` says a request was cancelled or timed out."""
    if isinstance(exc, CancelledError | error.ConnectingCancelledError | error.TimeoutError
                  | defer.TimeoutError | TimeoutError):
        return True
    if isinstance(exc, ResponseFailed | RequestGenerationFailed | RequestTransmissionFailed):
        return any(_timed_out(reason.value) for reason in exc.reasons)
    return False


class Relay:
    """
    Forward requests to workers through ``agent`` (an ``IAgent``; by
    default one of its own, on a pool of its own that :meth:`close`
    closes), giving each ``timeout`` seconds for its whole answer and at
    most ``max_response`` bytes of it. ``observe(seconds, status)`` (if
    given) hears of each relayed request once it is answered: ``status``
    is the answer's code, or :data:`CLOSED` if its caller went away first.
    """

    log = Logger()

    def __init__(self, reactor: Any, timeout: float = 30.0,
                 max_response: int = 16 * 1024 * 1024, agent: Any = None,
                 observe: Any = None):
        self.reactor = reactor
        self.timeout = timeout
        self.max_response = max_response
        self.observe = observe
        self.pool: Any = None
        if agent is None:
            from turberfield_twisted.worker.agent import make_agent, quiet_pool

            self.pool = quiet_pool(reactor, persistent=True, per_host=MIN_PER_HOST)
            agent = make_agent(reactor, self.pool)
        self.agent = agent
        self._cooperator = Cooperator(scheduler=lambda work: reactor.callLater(0, work))
        self._inflight: collections.Counter[bytes] = collections.Counter()
        #: The most requests seen in flight to one worker at once.
        self.peak = 0

    def close(self) -> Deferred[None]:
        """Close the idle connections of the relay's own pool."""
        self._cooperator.stop()
        if self.pool is None:
            return succeed(None)
        return self.pool.closeCachedConnections()

    def body(self, request: Any, length: int) -> IBodyProducer | None:
        """
        The request's body, ``length`` bytes (as the API measured it), read
        from where the server kept it (None if empty).
        """
        content = request.content
        if content is None or length == 0:
            return None
        content.seek(0)
        if length <= _ONE_WRITE:
            return _Bytes(content.read())
        return FileBodyProducer(content, cooperator=self._cooperator)

    def in_flight(self, base: str) -> int:
        """Requests relayed to the worker at ``base`` (``http://ADDR:PORT``) now in flight."""
        return self._inflight.get(base.encode("ascii"), 0)

    def _sized(self, base: bytes, delta: int) -> None:
        """Count a request to ``base`` starting (+1) or ending (-1); size the pool to it."""
        self._inflight[base] += delta
        if self._inflight[base] <= 0:
            del self._inflight[base]
        elif self._inflight[base] > self.peak:
            self.peak = self._inflight[base]
            if self.pool is not None:
                self.pool.maxPersistentPerHost = max(MIN_PER_HOST,
                                                     min(self.peak, MAX_PER_HOST))

    async def forward(self, request: Any, job: Any, base: str, length: int,
                      mount: str | None = None) -> bytes:
        """
        Send ``request`` (its method, path under the job, query, headers and
        body, ``length`` bytes) to ``job``'s worker at ``base``
        (``http://ADDR:PORT``) and write its answer into ``request``; raise
        :class:`RelayError` (400, 502, 504) if it can't before any of the
        answer is sent. ``mount`` is where the worker's paths are here (its
        ``Location`` is rewritten under it): ``/jobs/{guid}/proxy`` unless
        given (a service's relay gives its own).
        """
        guid = job.guid
        target = upstream_path(request)
        if job.state not in RELAY_STATES:
            raise RelayError(502, f"job {guid} is {job.state.value}, not running")
        if not job.host:
            raise RelayError(502, f"job {guid} has not said where it listens yet")
        origin = base.encode("ascii")
        started = self.reactor.seconds()
        self._sized(origin, +1)
        status: int | str = 502
        where = mount.encode("ascii") if mount is not None else None
        try:
            status = await self._exchange(request, guid, origin + target, job.token, length,
                                          where)
        except RelayError as exc:
            status = exc.status
            raise
        finally:
            self._sized(origin, -1)
            if self.observe is not None:
                self.observe(self.reactor.seconds() - started, status)
        return b""

    async def _exchange(self, request: Any, guid: str, url: bytes, token: str,
                        length: int, mount: bytes | None) -> int | str:
        method = request.method
        headers = relay_headers(request)
        if token:
            headers.setRawHeaders(b"Authorization", [b"Bearer " + token.encode("utf-8")])
        answer: _Answer | None = None
        waiting: list[Deferred[Any]] = []

        def too_late() -> None:  # one timer for the whole answer, whatever it waits for
            if waiting:
                waiting[-1].cancel()

        timer = self.reactor.callLater(self.timeout, too_late)
        try:
            waiting.append(self.agent.request(method, url, headers,
                                              self.body(request, length)))
            response = await waiting[-1]
            location = self._location(response, guid, url, mount)
            answer = _Answer(request, self.max_response, HOLD, response.length,
                             lambda: self._head(request, response, location))
            response.deliverBody(answer)
            waiting.append(answer.done)
            await answer.done
        except Exception as exc:
            verb = method.decode("ascii", "replace")
            if request.channel is None:  # the caller went away: no one to answer
                self.log.info("job {guid}: the caller of a relayed {method} went away",
                              guid=guid, method=verb)
                return CLOSED
            if answer is not None and answer.committed:
                # Part of it is sent: it can't become an error answer now.
                self.log.warn("job {guid}: relayed {method} cut off: {why}", guid=guid,
                              method=verb, why=type(exc).__name__)
                answer.request.channel.transport.abortConnection()
                return 502
            if isinstance(exc, _LeavesOrigin):
                self.log.warn("job {guid}: its answer to a relayed {method} redirects off its"
                              " origin, to {location}: answered 502", guid=guid, method=verb,
                              location=_printable(exc.location[:200]))
                raise RelayError(502, f"job {guid} answered with a Location off its own"
                                      " origin; the answer is not relayed") from None
            if isinstance(exc, _TooLarge):
                self.log.warn("job {guid}: relayed answer over {limit} bytes", guid=guid,
                              limit=self.max_response)
                raise RelayError(502, "the worker's answer is too large") from None
            if _timed_out(exc):
                self.log.warn("job {guid}: no answer to a relayed {method} in {timeout}s",
                              guid=guid, method=verb, timeout=self.timeout)
                raise RelayError(504, f"job {guid} did not answer in time") from None
            self.log.warn("job {guid}: relayed {method} failed: {why}", guid=guid, method=verb,
                          why=type(exc).__name__)
            raise RelayError(502, f"job {guid} could not be reached") from None
        finally:
            if timer.active():
                timer.cancel()
        if not answer.committed:  # whole: one write, its length known (no chunked framing)
            self._head(request, response, location)
            body = b"".join(answer.held)
            if request.method != b"HEAD" and response.code not in (204, 304):
                request.setHeader(b"Content-Length", b"%d" % len(body))
            request.write(body)
        return int(response.code)

    @staticmethod
    def _location(response: Any, guid: str, url: bytes, mount: bytes | None) -> bytes | None:
        """
        The worker's ``Location`` (if any) for the caller: under job
        ``guid``'s proxy (or ``mount``, a service's); raise
        :class:`_LeavesOrigin` (the body taken and dropped) if it leaves the
        worker's origin, that of ``url``.
        """
        given = response.headers.getRawHeaders(b"location")
        if not given:
            return None
        where = under_proxy(given[-1], guid, url, mount)
        if where is None:
            response.deliverBody(_Discard())
            raise _LeavesOrigin(given[-1])
        return where

    @staticmethod
    def _head(request: Any, response: Any, location: bytes | None) -> None:
        """The worker's status, content type and ``location`` (as relayed) on ``request``."""
        request.setResponseCode(response.code)
        kind = response.headers.getRawHeaders(b"content-type")
        if kind:
            request.setHeader(b"Content-Type", kind[-1])
        else:
            request.defaultContentType = None
        if location is not None:
            request.setHeader(b"Location", location)
