"""
Who hears of job events: a list of observers, each told of every
:class:`~turberfield_twisted.job.JobEvent`, and a Deferred way to wait for
one job to reach a state.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from .job import EventKind, JobEvent, JobState

__all__ = ["Observer", "Observers"]

#: ``observer(event)``: told of every job event.
Observer = Callable[[JobEvent], None]


class Observers:
    """Observers of job events; one that raises is logged and the others still hear."""

    log = Logger()

    def __init__(self) -> None:
        self._observers: list[Observer] = []

    def __len__(self) -> int:
        return len(self._observers)

    def subscribe(self, observer: Observer) -> Callable[[], None]:
        """Call ``observer(event)`` on every event; return an unsubscriber."""
        self._observers.append(observer)

        def unsubscribe() -> None:
            if observer in self._observers:
                self._observers.remove(observer)

        return unsubscribe

    def emit(self, event: JobEvent) -> None:
        """Tell every observer of ``event``, in the order they subscribed."""
        for observer in list(self._observers):
            try:
                observer(event)
            except Exception:
                self.log.failure("observer failed on {event} of job {guid}",
                                 event=event.name, guid=event.guid)

    def entered(self, guid: str, states: Collection[JobState]) -> Deferred[JobEvent]:
        """
        Fire with the next event of job ``guid`` entering one of ``states``;
        cancel it to stop waiting.
        """

        def observe(event: JobEvent) -> None:
            if event.guid == guid and event.kind is EventKind.STATE and event.state in states:
                unsubscribe()
                d.callback(event)

        def cancel(_: Any) -> None:
            unsubscribe()

        d: Deferred[JobEvent] = Deferred(cancel)
        unsubscribe = self.subscribe(observe)
        return d
