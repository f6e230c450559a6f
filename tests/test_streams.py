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
