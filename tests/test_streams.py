"""A caller's event stream ends when its token stops working: revoked, or expired (Clock)."""

from __future__ import annotations

from test_events import _Request
from twisted.internet.task import Clock

from turberfield_twisted.access.roles import Role
from turberfield_twisted.access.tokens import Caller
from turberfield_twisted.http.events import Journal
from turberfield_twisted.http.streams import Streams


def opened(streams: Streams, caller: Caller) -> object:
    request = _Request([b"events"])
    request.caller = caller
    return streams.open(request, None, None)


def test_a_revoked_tokens_streams_end_and_no_other():
    """close(digest) ends the streams that token opened, not another token's."""
    clock = Clock()
    streams = Streams(Journal(), clock, lambda guid: None)
    gone = opened(streams, Caller("a", Role.VIEWER, (), "digest-a"))
    kept = opened(streams, Caller("b", Role.VIEWER, (), "digest-b"))
    streams.close("digest-a")
    assert gone.called and not kept.called
    streams.close("digest-b")
    assert not clock.getDelayedCalls() or all(not c.active() for c in clock.getDelayedCalls())


def test_a_stream_ends_when_its_token_expires():
    """A token that expires at 10 s: its stream ends at 10 s, with nothing left pending."""
    clock = Clock()
    streams = Streams(Journal(), clock, lambda guid: None)
    stream = opened(streams, Caller("short", Role.VIEWER, (), "d", expires=10.0))
    clock.advance(9.9)
    assert not stream.called
    clock.advance(0.1)
    assert stream.called
    assert not [call for call in clock.getDelayedCalls() if call.active()]


def test_audit_records_are_live_only_and_push_no_job_event_out():
    """An audit entry reaches listeners but is not kept: a resumed client sees no gap."""
    from turberfield_twisted.access.records import AuditRecord

    journal = Journal(keep=2)
    heard: list[str] = []
    journal.listen(lambda entry: heard.append(entry.event))
    journal._add("state", "g", b"{}")
    for _ in range(5):
        journal.audit(AuditRecord(0.0, "-", "-", "127.0.0.1", "GET", "/jobs", 401))
    journal._add("state", "g", b"{}")
    kept, lost = journal.since(journal.run, 1)
    assert [entry.event for entry in kept] == ["state"] and not lost
    assert heard.count("audit") == 5


def test_a_scoped_stream_gets_the_events_of_the_services_and_modules_it_names():
    """
    A token limited to service "web" gets web's own events and its instances' (their
    output too), not another job's of the same module; one limited to the module gets
    all three; one limited elsewhere gets none.
    """
    from types import SimpleNamespace

    from turberfield_twisted.jobs.job import EventKind, JobEvent, JobState, OutputLine

    jobs = {"web.1": SimpleNamespace(module="m", service="web"),
            "lone": SimpleNamespace(module="m", service=None)}
    journal = Journal()
    streams = Streams(journal, Clock(), jobs.get)
    requests = {}
    for scope in ("web", "m", "other"):
        request = _Request([b"events"])
        request.caller = Caller(scope, Role.VIEWER, (scope,), f"digest-{scope}")
        streams.open(request, "web.1", None)
        requests[scope] = request
    journal.event(JobEvent(EventKind.SERVICE, "scaled", "web", "m", 1.0, None, service="web"))
    journal.event(JobEvent(EventKind.STATE, "ready", "web.1", "m", 1.0, JobState.READY,
                           service="web"))
    journal.event(JobEvent(EventKind.STATE, "ready", "lone", "m", 1.0, JobState.READY))
    journal.line(OutputLine("web.1", 1.0, "stdout", "hello"))

    def heard(scope: str) -> list[str]:
        return [frame.split(b"\nevent: ")[1].split(b"\n")[0].decode() + ":"
                + ("lone" if b"lone" in frame else "web")
                for frame in requests[scope].written[1:]]

    assert heard("web") == ["service:web", "state:web", "log:web"]
    assert heard("m") == ["service:web", "state:web", "state:lone", "log:web"]
    assert heard("other") == []
