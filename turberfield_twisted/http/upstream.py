"""
Where a relayed request goes.

:class:`Upstream` is one worker as the relay reaches it: its address,
the token it is sent, where its paths are mounted on the API (its
``Location`` is rewritten under that) and the guid its log lines carry.
A :data:`Choose` function gives one for a name in the path: the jobs'
(:func:`upstream_of` a job, ``/jobs/{guid}/proxy/``) is the first; another
mount (a service's instances) plugs in its own beside it
(:class:`Mount`, :meth:`~turberfield_twisted.http.api.ControlAPI.mount`).

An :class:`UpstreamClient` carries the request there and the answer
back: :class:`~turberfield_twisted.http.pool.WirePool` (bytes on
kept-alive connections), or an ``IAgent`` through
:class:`~turberfield_twisted.http.agentclient.AgentClient` (tests in memory).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import IO, Protocol

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer

from turberfield_twisted.jobs.job import Job, JobState
from turberfield_twisted.worker.wire import RawHeaders

__all__ = ["MAX_PER_HOST", "MIN_PER_HOST", "RELAY_STATES", "AnswerSink", "Choose", "Mount",
           "RelayError", "Relayed", "RequestHead", "Sending", "Upstream", "UpstreamClient",
           "upstream_of"]

#: Job states in which a worker may answer a relayed request.
RELAY_STATES = frozenset({JobState.STARTING, JobState.READY})


#: Idle connections kept per worker: at least this, at most ``MAX_PER_HOST``.
MIN_PER_HOST, MAX_PER_HOST = 4, 64


class RelayError(Exception):
    """The relay could not pass an answer back: ``status`` and a readable ``message``."""

    def __init__(self, status: int, message: str):
        self.status = status
        self.message = message
        super().__init__(status, message)


@attrs.frozen
class Upstream:
    """
    A worker as the relay reaches it: ``host`` and ``port``, the ``token``
    sent in place of the caller's (empty: none), ``mount`` (where its
    paths are on the API, such as ``/jobs/{guid}/proxy``) and the ``guid``
    that log lines about it carry.
    """

    host: str
    port: int
    token: str
    mount: bytes
    guid: str
    #: ``http://HOST:PORT`` (brackets around an IPv6 address).
    base: str = attrs.field(init=False, eq=False, repr=False, default=attrs.Factory(
        lambda self: f"http://{f'[{self.host}]' if ':' in self.host else self.host}:{self.port}",
        takes_self=True))


class Relayed(Protocol):
    """What the relay reads of a request (a Twisted request is one)."""

    method: bytes
    uri: bytes
    path: bytes

    def getHeader(self, key: bytes) -> bytes | None:
        """The last value of header ``key``."""


#: ``choose(name, request)``: the upstream for the name a relayed path gives (a
#: guid ...), for ``request`` (its caller may matter); it raises what the API
#: answers (UnknownJob 404, RelayError 502 ...).
Choose = Callable[[str, Relayed], Upstream]


@attrs.frozen
class Mount:
    """
    Relayed paths: ``pattern`` matches a request's path and its first
    group is the name ``choose`` is given; ``admit(request)`` checks the
    caller first (its token: raise what the API answers).
    """

    pattern: re.Pattern[bytes]
    choose: Choose
    admit: Callable[[Relayed], None]


def upstream_of(job: Job, mount: bytes | None = None) -> Upstream:
    """
    ``job``'s worker, its paths under ``mount`` (by default its own,
    ``/jobs/{guid}/proxy``); RelayError 502 if it is not running or has not
    said where it listens.
    """
    guid = job.guid
    if job.state not in RELAY_STATES:
        raise RelayError(502, f"job {guid} is {job.state.value}, not running")
    if not job.host:
        raise RelayError(502, f"job {guid} has not said where it listens yet")
    if mount is None:
        mount = f"/jobs/{guid}/proxy".encode("ascii")  # a guid is ASCII (config.names.GUID)
    return Upstream(job.host, job.port, job.token, mount, guid)


@attrs.frozen
class RequestHead:
    """What goes to a worker ahead of the body: method, target and headers (raw)."""

    method: bytes
    target: bytes
    headers: RawHeaders

    def encode(self, upstream: Upstream, length: int) -> bytes:
        """The head as bytes for ``upstream``, with a body of ``length`` bytes."""
        lines = [self.method, b" ", self.target, b" HTTP/1.1\r\nHost: ",
                 upstream.base.encode("ascii")[7:], b"\r\n"]
        for name, value in self.headers:
            lines += [name, b": ", value, b"\r\n"]
        if length or self.method in (b"POST", b"PUT", b"PATCH"):
            lines.append(b"Content-Length: %d\r\n" % length)
        lines.append(b"\r\n")
        return b"".join(lines)


class AnswerSink(Protocol):
    """Who hears of a worker's answer: :class:`~.wire.Sink`'s calls, and its failure."""

    def head(self, status: int, headers: RawHeaders, length: int | None) -> None: ...

    def body(self, data: bytes) -> None: ...

    def end(self, reusable: bool) -> None: ...

    def failed(self, reason: Exception) -> None:
        """No answer (or not all of it) will come: refused, cut, not HTTP."""


class Sending(Protocol):
    """A request on its way: its answer's flow (``producer``), and a way to give it up."""

    @property
    def producer(self) -> IPushProducer | None:
        """What to pause while the caller is slow (None until connected)."""

    def cancel(self) -> None:
        """Give it up: its connection is closed (it can't carry another request)."""


class UpstreamClient(Protocol):
    """
    How the relay sends: :class:`~.pool.WirePool`, or an ``IAgent`` through
    :class:`~.agentclient.AgentClient`. ``per_host``: idle connections it
    keeps to each worker.
    """

    per_host: int

    def send(self, upstream: Upstream, head: RequestHead, body: bytes | IO[bytes],
             length: int, sink: AnswerSink, headless: bool) -> Sending:
        """Send a request (its body ``length`` bytes) to ``upstream``; ``sink`` hears back."""

    def grow(self, seen: int) -> None:
        """``seen`` requests were in flight to one worker at once: keep as many idle."""

    def close(self) -> Deferred[None]:
        """Close its connections; fire once they are closed."""
