"""
The live event stream: ``GET /events`` as Server-Sent Events.

A :class:`Journal` numbers every job event and every output line as they
happen and keeps the most recent ones (bounded in count and bytes), so
that a client that reconnects with ``Last-Event-ID`` gets what it missed,
with no gap while those entries are kept (and an explicit ``gap`` event
when they are not, or when the daemon restarted since). Each
:class:`EventStream` writes one client's entries as they come, holds
them while the client reads slowly, and ends the response (the client
resumes with ``Last-Event-ID``) rather than buffer without bound.
"""

from __future__ import annotations

import json
import re
import secrets
from collections import deque
from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.web.server import Request
from zope.interface import implementer

from turberfield_twisted.access.records import AuditRecord
from turberfield_twisted.errors import Invalid
from turberfield_twisted.jobs.job import JobEvent, OutputLine
from turberfield_twisted.jobs.observers import Observers

__all__ = ["Entry", "EventStream", "Journal", "parse_event_id", "sse"]

@attrs.frozen
class Entry:
    """
    One numbered entry of the stream: its number ``id`` in the daemon's run
    ``run``, SSE ``event`` name, ``guid`` and data; ``names``: the module and
    service (if any) an event is about, what a token's scope is checked
    against (empty: look the job up by its guid).
    """

    run: str
    id: int
    event: str
    guid: str
    data: bytes = attrs.field(repr=False)
    names: tuple[str, ...] = ()

    def encode(self) -> bytes:
        """The entry as one Server-Sent Event, its id ``RUN-N``."""
        return sse(self.data, self.event, f"{self.run}-{self.id}")


def sse(data: bytes, event: str | None = None, id: str | None = None) -> bytes:
    """``data`` (one line of JSON) framed as a Server-Sent Event."""
    head = b"" if id is None else b"id: " + id.encode("ascii") + b"\n"
    if event is not None:
        head += b"event: " + event.encode("ascii") + b"\n"
    return head + b"data: " + data + b"\n\n"


_EVENT_ID = re.compile(r"([0-9a-f]{8})-([0-9]{1,18})")


def parse_event_id(text: str) -> tuple[str, int]:
    """``(run, n)`` of an event id ``RUN-N``; raise :class:`Invalid` if it is not one."""
    match = _EVENT_ID.fullmatch(text.strip())
    if match is None:
        raise Invalid("Last-Event-ID must be an id this stream sent (RUN-N)")
    return match.group(1), int(match.group(2))


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), default=str).encode("utf-8")


class Journal:
    """
    The last ``keep`` entries (at most ``max_bytes`` of data), numbered
    from 1, and whoever listens for new ones. Feed it with
    ``initiator.subscribe(journal.event)`` and
    ``initiator.subscribe_output(journal.line)``.
    """

    def __init__(self, keep: int = 2000, max_bytes: int = 8 * 1024 * 1024):
        #: This daemon run's name: ids of another run (before a restart) resume nothing.
        self.run = secrets.token_hex(4)
        self.keep = keep
        self.max_bytes = max_bytes
        self.last_id = 0
        self._entries: deque[Entry] = deque()
        self._bytes = 0
        #: The id of the last entry no longer kept (0: none dropped yet).
        self._dropped = 0
        self._listeners: Observers[Entry] = Observers()

    def event(self, event: JobEvent) -> None:
        """Record a job event (SSE event name: its kind, ``state``, ``worker`` or ``service``)."""
        names = (event.module, event.service) if event.service else (event.module,)
        self._add(event.kind.value, event.guid, _json(event.as_json()), names=names)

    def line(self, line: OutputLine) -> None:
        """Record a line of a job's output (SSE event name ``log``)."""
        self._add("log", line.guid, _json(line.as_json()))

    def audit(self, record: AuditRecord) -> None:
        """
        Pass on an audit record (SSE event name ``audit``: admins' streams
        only), live only: it is not kept for a client that resumes (the
        store keeps the trail), so a run of refusals can't push job events out.
        """
        self._add("audit", "", _json(record.as_json()), keep=False)

    def _add(self, name: str, guid: str, data: bytes, keep: bool = True,
             names: tuple[str, ...] = ()) -> None:
        self.last_id += 1
        entry = Entry(self.run, self.last_id, name, guid, data, names)
        if not keep:
            self._listeners.emit(entry)
            return
        self._entries.append(entry)
        self._bytes += len(data)
        while len(self._entries) > self.keep or self._bytes > self.max_bytes:
            dropped = self._entries.popleft()
            self._bytes -= len(dropped.data)
            self._dropped = dropped.id
        self._listeners.emit(entry)

    def since(self, run: str, last_id: int) -> tuple[list[Entry], bool]:
        """
        The entries kept after ``last_id`` of run ``run`` (every entry kept,
        if that was another run), and whether some in between are lost.
        """
        if run != self.run:
            last_id = 0
        kept = [entry for entry in self._entries if entry.id > last_id]
        return kept, run != self.run or last_id < self._dropped

    def listen(self, listener: Callable[[Entry], None]) -> Callable[[], None]:
        """Call ``listener(entry)`` for each new entry; return a function that stops it."""
        return self._listeners.subscribe(listener)


@implementer(IPushProducer)
@attrs.define(eq=False)
class EventStream:
    """
    One client of ``GET /events``: first an ``open`` event naming the last
    entry so far, then the entries ``wanted`` (a predicate) after those
    since ``last``, as they come; a comment every ``keepalive`` seconds on
    ``reactor``. While the client reads slower than entries come, at most
    ``max_backlog`` wait; past that the response ends (the client resumes
    with ``Last-Event-ID``).
    """

    log = Logger()

    _journal: Journal = attrs.field(alias="journal")
    _request: Request = attrs.field(alias="request")
    _reactor: IReactorTime = attrs.field(alias="reactor")
    _wanted: Callable[[Entry], bool] = attrs.field(alias="wanted")
    _every: float = attrs.field(alias="keepalive", default=15.0)
    _max_backlog: int = attrs.field(alias="max_backlog", default=5000)
    _paused: bool = attrs.field(init=False, default=False)
    _closed: bool = attrs.field(init=False, default=False)
    _backlog: deque[bytes] = attrs.field(init=False, factory=deque)
    _sent: int = attrs.field(init=False, default=0)
    _stop_listening: Callable[[], None] = attrs.field(init=False, default=lambda: None)
    _keepalive: LoopingCall = attrs.field(init=False)
    done: Deferred[bytes] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._keepalive = LoopingCall(self._write, b": keepalive\n\n")
        self._keepalive.clock = self._reactor
        self.done = Deferred(lambda _: self._close())

    def start(self, last: tuple[str, int] | None) -> Deferred[bytes]:
        """Begin writing; the Deferred fires (with b"") when the stream ends."""
        request = self._request
        request.setHeader(b"Content-Type", b"text/event-stream; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-cache")
        request.setHeader(b"X-Accel-Buffering", b"no")
        request.registerProducer(self, True)
        request.notifyFinish().addBoth(lambda _: self._close())
        self._stop_listening = self._journal.listen(self._entry)
        self._write(sse(_json({"last": f"{self._journal.run}-{self._journal.last_id}"}),
                        "open"))
        if last is not None:
            kept, lost = self._journal.since(*last)
            if lost:
                self._write(sse(_json({"after": f"{last[0]}-{last[1]}"}), "gap"))
            for entry in kept:
                self._entry(entry)
        self._keepalive.start(self._every, now=False)
        return self.done

    def close(self) -> None:
        """End the stream now (its token was revoked): the response ends."""
        self._close()

    def _entry(self, entry: Entry) -> None:
        if entry.id > self._sent and self._wanted(entry):
            self._sent = entry.id
            self._write(entry.encode())

    def _write(self, data: bytes) -> None:
        if self._closed:
            return
        if not self._paused:
            self._request.write(data)
            return
        self._backlog.append(data)
        if len(self._backlog) > self._max_backlog:
            self.log.warn("event stream client too slow: ended after entry {id}", id=self._sent)
            self._close()  # the route's Deferred fires: the router ends the response

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop_listening()
        if self._keepalive.running:
            self._keepalive.stop()
        self._backlog.clear()
        self._request.unregisterProducer()
        if not self.done.called:
            self.done.callback(b"")

    # -- IPushProducer: the transport says when the client keeps up ---------

    def pauseProducing(self) -> None:
        """The client's buffer is full: hold entries."""
        self._paused = True

    def resumeProducing(self) -> None:
        """The client caught up: write what was held."""
        self._paused = False
        while self._backlog and not self._paused and not self._closed:
            self._request.write(self._backlog.popleft())

    def stopProducing(self) -> None:
        """The connection is gone."""
        self._close()
