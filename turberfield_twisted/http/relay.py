"""
The relay: a request to ``/jobs/{guid}/proxy/<path>`` on the control API
goes to that job's worker, and the worker's answer comes back.

Where it goes is an :class:`~.upstream.Upstream` (chosen by the mount
the path is under: :mod:`.upstream`); how it gets there is the relay's
:class:`~.upstream.UpstreamClient`: by default a
:class:`~.pool.WirePool`, which writes the request's head and body as
bytes on a kept-alive connection to the worker and reads the answer
with httptools. Who asked is an :class:`Answer`: the caller's own
connection, read by the API's front (:mod:`.front`, most relayed
requests), or a Twisted request (:mod:`.site`, a connection that has
asked the API something else before).

Hop-by-hop headers, ``Host`` and the caller's ``Authorization`` are not
passed on: the job's own token goes in its place (a worker that listens
beyond loopback asks for it); redirects are not followed. Of the answer,
its status, ``Content-Type`` and ``Location`` come back. An answer up to
:data:`HOLD` bytes is held and sent whole, so that an error or a timeout
can still be answered as 502 or 504; a longer one is streamed, with the
caller's connection as its flow control. The whole answer is bounded in
time (``timeout``, 504, given at most a tenth of it late) and size
(``max_response``, 502; past the bound, a streamed answer is cut off).

A worker's ``Location`` on its own origin becomes the same path under its
mount (``/jobs/{guid}/proxy/...``); one that leaves it refuses the whole
answer as 502, logged with the job's guid (:func:`.rewrite.under_proxy`).
"""

from __future__ import annotations

import collections
from typing import IO, Any, Protocol

from twisted.internet import defer, error
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from turberfield_twisted.http.rewrite import relay_header_pairs, under_proxy, upstream_path
from turberfield_twisted.http.upstream import (
    MIN_PER_HOST,
    RELAY_STATES,
    Relayed,
    RelayError,
    RequestHead,
    Sending,
    Upstream,
    UpstreamClient,
)
from turberfield_twisted.worker.wire import RawHeaders

__all__ = ["CLOSED", "HOLD", "RELAY_STATES", "Answer", "Relay", "RelayError", "Relayed"]


#: How much of an answer is held before it is streamed: an answer up to this
#: long is sent whole, once it is complete.
HOLD = 64 * 1024


#: What a relayed request is counted as when its caller went away before its answer ended.
CLOSED = "closed"


class Answer(Protocol):
    """Where a relayed answer goes: the caller's connection, or a Twisted request."""

    def whole(self, status: int, headers: RawHeaders, body: bytes) -> None:
        """The answer, whole (its length known): status, headers and body in one go."""

    def start(self, status: int, headers: RawHeaders, length: int | None) -> None:
        """The answer's head; its body follows (``length`` bytes, or None: until it ends)."""

    def write(self, data: bytes) -> None:
        """A piece of the body."""

    def finish(self) -> None:
        """The body has ended."""

    def abort(self) -> None:
        """Cut it off: part of it is sent, so it can't become an error answer now."""

    def stream_from(self, producer: IPushProducer | None) -> None:
        """Pause ``producer`` while the caller is slow (None: no more)."""


def _timed_out(exc: BaseException) -> bool:
    """True if ``exc`` says a request was cancelled or timed out."""
    if isinstance(exc, CancelledError | error.ConnectingCancelledError | error.TimeoutError
                  | defer.TimeoutError | TimeoutError):
        return True
    reasons = getattr(exc, "reasons", None) or []  # twisted.web.client's wrapped failures
    return any(reason.value is not None and _timed_out(reason.value) for reason in reasons)


def _printable(data: bytes) -> str:
    """``data`` as text for the log: printable ASCII as it is, anything else escaped."""
    return "".join(c if " " <= c <= "~" else f"\\x{ord(c):02x}" for c in data.decode("latin-1"))


def _kind_and_location(headers: RawHeaders) -> tuple[bytes | None, bytes | None]:
    """The last ``Content-Type`` and ``Location`` of an answer's ``headers``."""
    kind = location = None
    for name, value in headers:
        if len(name) == 12 and name.lower() == b"content-type":
            kind = value
        elif len(name) == 8 and name.lower() == b"location":
            location = value
    return kind, location


class Relay:
    """
    Forward requests to workers through ``client`` (an
    :class:`~.upstream.UpstreamClient`; by default a
    :class:`~.pool.WirePool` of its own, which :meth:`close` closes),
    giving each ``timeout`` seconds for its whole answer and at most
    ``max_response`` bytes of it; or through ``agent`` (an ``IAgent``), if
    given. ``observe(seconds, status)`` (if given) hears of each relayed
    request once it is answered: ``status`` is the answer's code, or
    :data:`CLOSED` if its caller went away first.
    """

    log = Logger()

    def __init__(self, reactor: Any, timeout: float = 30.0,
                 max_response: int = 16 * 1024 * 1024, agent: Any = None,
                 observe: Any = None, client: UpstreamClient | None = None):
        self.reactor = reactor
        self.timeout = timeout
        self.max_response = max_response
        self.observe = observe
        if client is None and agent is not None:
            from turberfield_twisted.http.agentclient import AgentClient

            client = AgentClient(agent, reactor)
        if client is None:
            from turberfield_twisted.http.pool import WirePool

            client = WirePool(reactor, MIN_PER_HOST)
        #: How requests reach workers (``per_host``: the idle connections it keeps to each).
        self.pool: UpstreamClient = client
        self._inflight: collections.Counter[str] = collections.Counter()
        #: The most requests seen in flight to one worker at once.
        self.peak = 0
        #: Requests in flight, looked at every tick for those past ``timeout``.
        self._timed: set[_Exchange] = set()
        self._sweep: LoopingCall | None = None

    def close(self) -> Deferred[None]:
        """Close the relay's connections to workers (and stop its clock)."""
        if self._sweep is not None and self._sweep.running:
            self._sweep.stop()
        return self.pool.close()

    def _time(self, exchange: _Exchange) -> None:
        """
        Give ``exchange`` ``timeout`` seconds: one clock for all of them, which
        ticks every tenth of ``timeout`` (at most every second) while any is in
        flight, so that an answer is given up at most a tick late, and no
        request costs a timer of its own.
        """
        self._timed.add(exchange)
        if self._sweep is None or not self._sweep.running:
            self._sweep = LoopingCall(self._expire)
            self._sweep.clock = self.reactor
            self._sweep.start(min(1.0, self.timeout / 10), now=False)

    def _expire(self) -> None:
        if not self._timed:
            assert self._sweep is not None
            self._sweep.stop()  # nothing in flight: it starts again with the next
            return
        due = self.reactor.seconds() - self.timeout
        for exchange in [exchange for exchange in self._timed if exchange.started <= due]:
            exchange.too_late()

    def in_flight(self, base: str) -> int:
        """Requests relayed to the worker at ``base`` (``http://ADDR:PORT``) now in flight."""
        return self._inflight.get(base, 0)

    def forward(self, request: Relayed, headers: RawHeaders, body: bytes | IO[bytes],
                length: int, upstream: Upstream, answer: Answer) -> Deferred[int | str]:
        """
        Send ``request`` (its method, path under the mount, query, ``headers``
        and ``body`` of ``length`` bytes) to ``upstream`` and pass its answer
        to ``answer``. Raise :class:`~.errors.Invalid` (a path the relay does
        not pass) before anything is sent. The Deferred fires with the status
        once the answer has ended (or :data:`CLOSED`, or 502 if it was cut
        off), or fails with :class:`RelayError` (502, 504) before any of it is
        sent; cancel it if the caller goes away.
        """
        target = upstream_path(request)
        pairs = relay_header_pairs(headers)
        if upstream.token:
            pairs.append((b"Authorization", b"Bearer " + upstream.token.encode("utf-8")))
        exchange = _Exchange(self, upstream, request.method, target, answer)
        return exchange.send(RequestHead(request.method, target, pairs), body, length)

    def _begin(self, base: str) -> None:
        self._inflight[base] += 1
        if self._inflight[base] > self.peak:
            self.peak = self._inflight[base]
            self.pool.grow(self.peak)

    def _end(self, base: str) -> None:
        self._inflight[base] -= 1
        if self._inflight[base] <= 0:
            del self._inflight[base]


class _TooLarge(Exception):
    """A worker's answer is longer than the relay takes."""


class _Exchange:
    """One relayed request: sent to ``upstream``, its answer passed to ``answer``."""

    def __init__(self, relay: Relay, upstream: Upstream, method: bytes, target: bytes,
                 answer: Answer):
        self.relay = relay
        self.upstream = upstream
        self.method = method
        self.target = target
        self.answer = answer
        self.done: Deferred[int | str] = Deferred(lambda _: self._caller_gone())
        #: When it was sent, on the reactor's clock.
        self.started = 0.0
        self._sending: Sending | None = None
        self._status = 0
        self._headers: RawHeaders = []
        self._held: list[bytes] = []
        self._size = 0
        self._committed = False
        self._over = False
        self._dropped = False

    def send(self, head: RequestHead, body: bytes | IO[bytes], length: int
             ) -> Deferred[int | str]:
        relay = self.relay
        self.started = relay.reactor.seconds()
        relay._begin(self.upstream.base)
        relay._time(self)
        sending = relay.pool.send(self.upstream, head, body, length, self,
                                  headless=self.method == b"HEAD")
        self._sending = sending
        if self._dropped:  # given up while it was being sent (an agent that answers at once)
            sending.cancel()
        return self.done

    # -- the end, whichever way ---------------------------------------------

    def _over_with(self, status: int | str) -> bool:
        """Count it as answered ``status``; False if it was over already."""
        if self._over:
            return False
        self._over = True
        relay = self.relay
        relay._timed.discard(self)
        relay._end(self.upstream.base)
        if relay.observe is not None:
            relay.observe(relay.reactor.seconds() - self.started, status)
        return True

    def _drop(self) -> None:
        """Give the request up: its connection can't carry another."""
        self._dropped = True
        if self._sending is not None:
            self._sending.cancel()

    def _refuse(self, status: int, message: str) -> None:
        """Nothing of the answer is sent: the caller gets ``status`` (from the front)."""
        if self._committed:
            self._cut()
            return
        self._drop()
        if self._over_with(status):
            self.done.errback(RelayError(status, message))

    def _cut(self) -> None:
        """Part of the answer is sent: cut the caller off (counted 502)."""
        self._drop()
        if self._over_with(502):
            self.answer.stream_from(None)
            self.answer.abort()
            self.done.callback(502)

    def _caller_gone(self) -> None:
        self._drop()
        if self._over_with(CLOSED):
            self.answer.stream_from(None)
            self.relay.log.info("job {guid}: the caller of a relayed {method} went away",
                                guid=self.upstream.guid, method=self._verb)

    @property
    def _verb(self) -> str:
        return self.method.decode("ascii", "replace")

    def too_late(self) -> None:
        """Its ``timeout`` is up: 504, or cut off if part of the answer is sent."""
        guid, relay = self.upstream.guid, self.relay
        if self._committed:
            relay.log.warn("job {guid}: relayed {method} cut off: {why}", guid=guid,
                           method=self._verb, why="TimeoutError")
            self._cut()
            return
        relay.log.warn("job {guid}: no answer to a relayed {method} in {timeout}s", guid=guid,
                       method=self._verb, timeout=relay.timeout)
        self._refuse(504, f"job {guid} did not answer in time")

    # -- the worker's answer (the client's sink) ------------------------------

    def head(self, status: int, headers: RawHeaders, length: int | None) -> None:
        if self._over:
            return
        guid = self.upstream.guid
        out: RawHeaders = []
        kind, given = _kind_and_location(headers)
        if kind is not None:
            out.append((b"Content-Type", kind))
        if given is not None:
            url = self.upstream.base.encode("ascii") + self.target
            where = under_proxy(given, guid, url, self.upstream.mount)
            if where is None:
                self.relay.log.warn(
                    "job {guid}: its answer to a relayed {method} redirects off its origin,"
                    " to {location}: answered 502", guid=guid, method=self._verb,
                    location=_printable(given[:200]))
                self._refuse(502, f"job {guid} answered with a Location off its own origin;"
                                  " the answer is not relayed")
                return
            out.append((b"Location", where))
        self._status, self._headers = status, out
        if length is not None and length > self.relay.max_response:
            self._too_large()
        elif length is not None and length > HOLD:
            self._commit(length)

    def body(self, data: bytes) -> None:
        if self._over:
            return
        self._size += len(data)
        if self._size > self.relay.max_response:
            self._too_large()
        elif self._committed:
            self.answer.write(data)
        else:
            self._held.append(data)
            if self._size > HOLD:
                self._commit(None)

    def end(self, reusable: bool) -> None:
        if self._over:
            return
        if self._committed:
            self.answer.stream_from(None)
            self.answer.finish()
        else:
            self.answer.whole(self._status, self._headers, b"".join(self._held))
        if self._over_with(self._status):
            self.done.callback(self._status)

    def failed(self, reason: Exception) -> None:
        if self._over:
            return
        guid, relay = self.upstream.guid, self.relay
        if self._committed:
            relay.log.warn("job {guid}: relayed {method} cut off: {why}", guid=guid,
                           method=self._verb, why=type(reason).__name__)
            self._cut()
        elif _timed_out(reason):
            relay.log.warn("job {guid}: no answer to a relayed {method} in {timeout}s",
                           guid=guid, method=self._verb, timeout=relay.timeout)
            self._refuse(504, f"job {guid} did not answer in time")
        else:
            relay.log.warn("job {guid}: relayed {method} failed: {why}", guid=guid,
                           method=self._verb, why=type(reason).__name__)
            self._refuse(502, f"job {guid} could not be reached")

    def _commit(self, length: int | None) -> None:
        """Send the head and what is held; stream the rest as it comes."""
        self._committed = True
        answer = self.answer
        answer.start(self._status, self._headers, length)
        answer.stream_from(self._sending.producer if self._sending is not None else None)
        held, self._held = self._held, []
        for chunk in held:
            answer.write(chunk)

    def _too_large(self) -> None:
        self.relay.log.warn("job {guid}: relayed answer over {limit} bytes",
                            guid=self.upstream.guid, limit=self.relay.max_response)
        if self._committed:
            self._cut()
        else:
            self._refuse(502, "the worker's answer is too large")
