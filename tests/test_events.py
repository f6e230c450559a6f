"""GET /events: the journal on its own, one stream on a fake request, and a real daemon."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred, succeed
from twisted.internet.task import Clock
from twisted.web.test.requesthelper import DummyRequest

from turberfield_twisted.cli.client import ControlClient, ServerEvent
from turberfield_twisted.errors import Invalid
from turberfield_twisted.http.events import EventStream, Journal, parse_event_id
from turberfield_twisted.jobs.job import EventKind, JobEvent, JobState, OutputLine
from turberfield_twisted.testing.procs import wait_gone
from turberfield_twisted.worker.parent import make_http

DEMO = "turberfield_twisted.demo.hello"


def event(guid: str = "g", state: JobState = JobState.READY) -> JobEvent:
    return JobEvent(EventKind.STATE, state.value, guid, "m", 1.0, state)


# -- the journal ------------------------------------------------------------------


def test_entries_are_numbered_and_the_oldest_go_first():
    """Ids count from 1; past ``keep`` entries the oldest are dropped, and a resume says so."""
    journal = Journal(keep=3)
    for n in range(5):
        journal.event(event(f"g{n}"))
    kept, lost = journal.since(journal.run, 0)
    assert [e.id for e in kept] == [3, 4, 5] and lost
    kept, lost = journal.since(journal.run, 2)
    assert [e.id for e in kept] == [3, 4, 5] and not lost
    kept, lost = journal.since(journal.run, 4)
    assert [e.id for e in kept] == [5] and not lost


def test_an_id_of_another_run_replays_all_that_is_kept_and_says_so():
    """After a daemon restart the old ids mean nothing: everything kept, and a gap."""
    journal = Journal()
    journal.event(event())
    kept, lost = journal.since("00000000", 99)
    assert [e.id for e in kept] == [1] and lost


def test_the_journal_is_bounded_in_bytes_too():
    """Long lines push old entries out once their data passes max_bytes."""
    journal = Journal(keep=1000, max_bytes=1000)
    for n in range(10):
        journal.line(OutputLine("g", float(n), "stdout", "x" * 300))
    kept, lost = journal.since(journal.run, 0)
    assert lost and [e.id for e in kept] == [9, 10]  # a third would pass 1000 bytes
    assert sum(len(e.data) for e in kept) <= 1000 < sum(len(e.data) for e in kept) * 3 / 2


@pytest.mark.parametrize("text", ["12", "zz-1", "0123abcd-", "0123abcd-1-2", "x" * 200])
def test_a_malformed_event_id_is_a_validation_error(text):
    """Last-Event-ID must be RUN-N as this stream sent it."""
    with pytest.raises(Invalid):
        parse_event_id(text)


# -- one stream on a fake request -----------------------------------------------------


class _Request(DummyRequest):
    """A DummyRequest that takes a push producer (its own only drives pull producers)."""

    producer: Any = None

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None


def stream(journal: Journal, wanted: Callable[[Any], bool] = lambda e: True,
           last: tuple[str, int] | None = None, **kwargs: Any) -> tuple[_Request, Any, Clock]:
    request, clock = _Request([b"events"]), Clock()
    s = EventStream(journal, request, clock, wanted, **kwargs)
    s.start(last)
    return request, s, clock


def test_events_are_written_as_they_come_framed_as_sse():
    """First ``open`` naming the last id; then each entry: ``id: RUN-N``, ``event:``, ``data:``."""
    journal = Journal()
    request, _, _ = stream(journal)
    assert request.written == [f'event: open\ndata: {{"last":"{journal.run}-0"}}\n\n'.encode()]
    journal.event(event())
    frame = request.written[-1]
    assert frame.startswith(f"id: {journal.run}-1\nevent: state\ndata: {{".encode())
    assert frame.endswith(b"}\n\n")
    assert request.responseHeaders.getRawHeaders(b"content-type") == [
        b"text/event-stream; charset=utf-8"]


def test_a_resume_replays_what_was_missed_then_goes_on_live():
    """Last-Event-ID N: the entries after N, in order, then new ones; none twice."""
    journal = Journal()
    for n in range(4):
        journal.event(event(f"g{n}"))
    request, _, _ = stream(journal, last=(journal.run, 2))
    journal.event(event("g4"))
    ids = [line for frame in request.written for line in frame.split(b"\n")
           if line.startswith(b"id: ")]
    assert ids == [f"id: {journal.run}-{n}".encode() for n in (3, 4, 5)]


def test_log_lines_go_only_to_who_asked_for_that_job():
    """With a filter, other jobs' lines are not sent (their state events are)."""
    journal = Journal()
    request, _, _ = stream(journal, lambda e: e.event != "log" or e.guid == "mine")
    journal.line(OutputLine("other", 1.0, "stdout", "not for you"))
    journal.line(OutputLine("mine", 1.0, "stdout", "for you"))
    journal.event(event("other"))
    text = b"".join(request.written)
    assert b"for you" in text and b"not for you" not in text and b'"guid":"other"' in text


def test_a_slow_client_gets_its_backlog_then_is_cut_past_the_bound():
    """Paused by the transport, entries wait; past max_backlog the stream ends (resumable)."""
    journal = Journal()
    request, s, _ = stream(journal, max_backlog=3)
    s.pauseProducing()
    for n in range(3):
        journal.event(event(f"g{n}"))
    written = len(request.written)
    s.resumeProducing()
    assert len(request.written) == written + 3
    s.pauseProducing()
    for n in range(4):
        journal.event(event(f"h{n}"))
    assert s.done.called and len(journal._listeners) == 0


def test_keepalive_comments_and_a_disconnect_stop_everything():
    """A comment every keepalive seconds; a disconnect stops listening and the timer."""
    journal = Journal()
    request, s, clock = stream(journal, keepalive=15)
    clock.advance(15)
    assert request.written[-1] == b": keepalive\n\n"
    s.stopProducing()  # what the transport says when the client goes
    assert s.done.called and len(journal._listeners) == 0 and clock.getDelayedCalls() == []


# -- through a real daemon ---------------------------------------------------------


class Follower:
    """Follows a daemon's /events and fires waiters when an event matching them arrives."""

    def __init__(self, client: ControlClient, **kwargs: Any):
        self.seen: list[ServerEvent] = []
        self._waiters: list[tuple[Callable[[ServerEvent], bool], Deferred[ServerEvent]]] = []
        self.done = ensureDeferred(client.events(self._event, **kwargs))

    def stop(self) -> None:
        """Stop following (its stream's Deferred ends cancelled, as expected)."""
        self.done.addErrback(lambda failure: failure.trap(CancelledError))
        self.done.cancel()

    def _event(self, e: ServerEvent) -> None:
        self.seen.append(e)
        for item in list(self._waiters):
            if item[0](e):
                self._waiters.remove(item)
                item[1].callback(e)

    def until(self, match: Callable[[ServerEvent], bool], reactor: Any,
              timeout: float = 30) -> Deferred[ServerEvent]:
        for e in self.seen:
            if match(e):
                return succeed(e)
        d: Deferred[ServerEvent] = Deferred()
        self._waiters.append((match, d))
        return d.addTimeout(timeout, reactor)


def state_of(guid: str, state: str) -> Callable[[ServerEvent], bool]:
    return lambda e: e.event == "state" and e.data["guid"] == guid and e.data["event"] == state


async def follow(daemon: Any, reactor: Any) -> tuple[ControlClient, Follower, Any]:
    """A client of ``daemon``, a follower of its stream (open), and the client's pool."""
    http, pool = make_http(reactor)
    client = ControlClient(http, daemon.url, daemon.token, reactor, timeout=10)
    follower = Follower(client)
    await follower.until(lambda e: e.event == "open", reactor)
    return client, follower, pool


@pytest_twisted.ensureDeferred
async def test_a_real_daemon_streams_states_kills_restarts_and_output(daemons, reactor):
    """
    A follower sees a launch get ready, a kill -9 go through backoff back to ready, and
    (asking for that job's logs) a line the worker printed; a resume misses nothing.
    """
    daemon = await daemons(size=10)
    client, follower, pool = await follow(daemon, reactor)
    try:
        guid = (await client.launch(DEMO))["guid"]
        ready = await follower.until(state_of(guid, "ready"), reactor)
        logs = Follower(client, logs=guid)
        await logs.until(lambda e: e.event == "open", reactor)
        os.kill(ready.data["pid"], signal.SIGKILL)
        await follower.until(state_of(guid, "backoff"), reactor)
        again = await follower.until(
            lambda e: state_of(guid, "ready")(e) and e.data["pid"] != ready.data["pid"], reactor)
        assert [e.data["event"] for e in follower.seen if e.data.get("guid") == guid] == [
            "waiting", "starting", "ready", "backoff", "waiting", "starting", "ready"]
        line = await logs.until(lambda e: e.event == "log" and "listening on" in
                                e.data["line"], reactor)
        assert line.data["guid"] == guid
        assert not [e for e in follower.seen if e.event == "log"]  # not asked for
        # A client that missed events resumes from the last it saw: no gap, nothing twice.
        last = again.id
        await client.stop(guid)
        await follower.until(state_of(guid, "exited"), reactor)
        resumed = Follower(client, last_id=last)
        await resumed.until(state_of(guid, "exited"), reactor)
        assert [e.data.get("event") for e in resumed.seen if e.event != "audit"] == [
            None, "stopping", "exited"]  # an audit event (the stop, a change) is there too
        logs.stop()
        resumed.stop()
        await wait_gone(reactor, [again.data["pid"]])
    finally:
        follower.stop()
        await pool.closeCachedConnections()


@pytest.mark.parametrize("keep, gap", [(3, True), (None, False)])
@pytest_twisted.ensureDeferred
async def test_a_resume_past_events_keep_gets_a_gap(daemons, reactor, keep, gap):
    """
    With ``events_keep = 3`` a client resuming from a job's first event (a launch and a
    stop later) is told of the gap; with the default it misses nothing.
    """
    daemon = await daemons(size=10, extra="" if keep is None else f"events_keep = {keep}\n")
    client, follower, pool = await follow(daemon, reactor)
    try:
        guid = (await client.launch(DEMO))["guid"]
        first = await follower.until(state_of(guid, "waiting"), reactor)
        ready = await follower.until(state_of(guid, "ready"), reactor)
        await client.stop(guid)
        await follower.until(state_of(guid, "exited"), reactor)
        resumed = Follower(client, last_id=first.id)
        await resumed.until(state_of(guid, "exited"), reactor)
        assert any(e.event == "gap" for e in resumed.seen) is gap
        resumed.stop()
        await wait_gone(reactor, [ready.data["pid"]])
    finally:
        follower.stop()
        await pool.closeCachedConnections()
