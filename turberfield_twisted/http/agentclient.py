"""
:class:`AgentClient`: the relay's requests sent through a Twisted
``IAgent`` instead of its own connections (what ``ControlAPI(relay_agent=)``
asks for: an agent over a resource in memory, in tests, or any agent of
the caller's). The answer is handed to the exchange as
:class:`~turberfield_twisted.worker.wire.ResponseReader` would hand it.
"""

from __future__ import annotations

from typing import IO, Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IPushProducer, IReactorTime
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.task import Cooperator
from twisted.python.failure import Failure
from twisted.web.client import FileBodyProducer, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH, IAgent, IBodyProducer, IResponse
from zope.interface import implementer

from turberfield_twisted.http.upstream import (
    MIN_PER_HOST,
    AnswerSink,
    RequestHead,
    Sending,
    Upstream,
)

__all__ = ["AgentClient"]


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


class _Body(Protocol):
    """An answer's body into ``sink``; its end as the sink's ``end``, a cut as ``failed``."""

    def __init__(self, sink: AnswerSink):
        self.sink = sink

    def dataReceived(self, data: bytes) -> None:
        self.sink.body(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if reason.check(ResponseDone, PotentialDataLoss):
            self.sink.end(False)
        else:
            assert reason.value is not None
            self.sink.failed(reason.value)  # type: ignore[arg-type]


class _AgentSending:
    """A request through the agent: cancelled before its answer, or its body stopped after."""

    def __init__(self, asked: Deferred[IResponse], sink: AnswerSink):
        self.sink = sink
        self.body: _Body | None = None
        self.cancelled = False
        self._asked = asked
        asked.addCallbacks(self._answered, self._failed)

    @property
    def producer(self) -> IPushProducer | None:
        return self.body.transport if self.body is not None else None  # type: ignore[return-value]

    def cancel(self) -> None:
        self.cancelled = True
        if not self._asked.called:
            self._asked.cancel()
        elif self.body is not None and self.body.transport is not None:
            self.body.transport.stopProducing()  # type: ignore[attr-defined]

    def _answered(self, response: IResponse) -> None:
        if self.cancelled:
            response.deliverBody(Protocol())
            return
        headers = [(name, value) for name, values in response.headers.getAllRawHeaders()
                   for value in values]
        length = None if response.length is UNKNOWN_LENGTH else int(response.length)
        self.body = _Body(self.sink)
        self.sink.head(response.code, headers, length)
        if not self.cancelled:
            response.deliverBody(self.body)

    def _failed(self, failure: Failure) -> None:
        if not self.cancelled:
            assert failure.value is not None
            self.sink.failed(failure.value)  # type: ignore[arg-type]


class AgentClient:
    """
    Send the relay's requests through ``agent`` (connections are the agent's
    own); a body from a file is read on ``reactor``'s turns.
    """

    def __init__(self, agent: IAgent, reactor: IReactorTime):
        self.agent = agent
        self.per_host = MIN_PER_HOST
        self._cooperator = Cooperator(scheduler=lambda work: reactor.callLater(0, work))

    def send(self, upstream: Upstream, head: RequestHead, body: bytes | IO[bytes],
             length: int, sink: AnswerSink, headless: bool) -> Sending:
        """See :meth:`~.upstream.UpstreamClient.send`."""
        headers = Headers()
        for name, value in head.headers:
            headers.addRawHeader(name, value)
        producer: IBodyProducer | None = None
        if isinstance(body, bytes):
            producer = _Bytes(body) if body else None
        elif length:
            producer = FileBodyProducer(body, cooperator=self._cooperator)
        url = upstream.base.encode("ascii") + head.target
        return _AgentSending(self.agent.request(head.method, url, headers, producer), sink)

    def grow(self, seen: int) -> None:
        """See :meth:`~.upstream.UpstreamClient.grow`: the agent's pool is its own."""
        self.per_host = max(self.per_host, seen)

    def close(self) -> Deferred[None]:
        """Stop reading bodies (its connections are the agent's)."""
        self._cooperator.stop()
        return succeed(None)
