"""
One web-hook subscription: what it asked for, its ordered and bounded
queue of signed records, and its delivery counters.
"""

from __future__ import annotations

import builtins
import json
import re
from collections import deque
from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall

from turberfield_twisted.hooks.rules import event_filter_matches, sign
from turberfield_twisted.jobs.job import JobEvent

__all__ = ["Delivery", "Subscription", "header_text"]

@attrs.frozen
class Delivery:
    """One queued record: its sequence number and the exact bytes to send."""

    seq: int
    event: str
    body: bytes
    signature: str = attrs.field(repr=False)


@attrs.define(eq=False)
class Subscription:
    """One subscription and its delivery state."""

    id: str
    url: str
    events: tuple[str, ...]
    secret: str = attrs.field(repr=False)
    queue: deque[Delivery] = attrs.field(factory=deque, repr=False)
    current: Delivery | None = None
    attempts: int = 0
    seq: int = 0
    delivered: int = 0
    dropped: int = 0
    failed_attempts: int = 0
    removed: bool = False
    pumping: bool = False
    #: Tries of the current record that met a closed pooled connection (no backoff).
    fresh: int = 0
    #: The last failed try had no answer at all (the receiver seemed down), not an
    #: HTTP error: a delivery to the same receiver getting through retries it at once.
    unreachable: bool = False
    request: Deferred[Any] | None = attrs.field(default=None, repr=False)
    retry: IDelayedCall | None = attrs.field(default=None, repr=False)

    def wants(self, event: JobEvent) -> bool:
        """Whether this hook subscribed to ``event``."""
        return any(event_filter_matches(name, event) for name in self.events)

    def record(self, event: JobEvent, max_queue: int) -> tuple[Delivery, int | None]:
        """
        Queue ``event`` as the next signed record (its ``seq`` the next one);
        return it, and the ``seq`` of the oldest, dropped to keep at most
        ``max_queue`` waiting (None if none was).
        """
        self.seq += 1
        body = json.dumps({**event.as_json(), "seq": self.seq}, separators=(",", ":"),
                          default=str).encode("utf-8")
        item = Delivery(self.seq, header_text(event.name), body, sign(self.secret, body))
        dropped = None
        if len(self.queue) >= max_queue:
            dropped = self.queue.popleft().seq
            self.dropped += 1
        self.queue.append(item)
        return item, dropped

    def as_json(self) -> dict[str, Any]:
        """The public view of this hook: no secret."""
        return {
            "id": self.id,
            "url": self.url,
            "events": builtins.list(self.events),
            "queued": len(self.queue) + (self.current is not None),
            "delivered": self.delivered,
            "dropped": self.dropped,
            "failed_attempts": self.failed_attempts,
        }


def header_text(value: Any) -> str:
    """A short printable-ASCII rendering of ``value`` for a header."""
    return re.sub(r"[^\x21-\x7e]", "_", str(value))[:128] or "_"
