"""
Who hears of what happens to jobs: lists of observers, each told of every
:class:`~turberfield_twisted.jobs.job.JobEvent` (or every
:class:`~turberfield_twisted.jobs.job.OutputLine`), and a Deferred way to wait
for one job to reach a state.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Generic, Protocol, TypeVar

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from turberfield_twisted.jobs.job import EventKind, JobEvent, JobState

__all__ = ["Observer", "Observers"]

class _OfAJob(Protocol):
    """What observers are told of: a job event, a line of its output ... (it names its job)."""

    @property
    def guid(self) -> str: ...


T = TypeVar("T", bound=_OfAJob)


#: ``observer(event)``: told of every job event.
Observer = Callable[[JobEvent], None]


class Observers(Generic[T]):
    """Observers of job events or output; one that raises is logged, the others still hear."""

    log = Logger()

    def __init__(self) -> None:
        self._observers: list[Callable[[T], None]] = []

    def __len__(self) -> int:
        return len(self._observers)

    def subscribe(self, observer: Callable[[T], None]) -> Callable[[], None]:
        """Call ``observer(item)`` on every item; return an unsubscriber."""
        self._observers.append(observer)

        def unsubscribe() -> None:
            if observer in self._observers:
                self._observers.remove(observer)

        return unsubscribe

    def emit(self, item: T) -> None:
        """Tell every observer of ``item``, in the order they subscribed."""
        for observer in list(self._observers):
            try:
                observer(item)
            except Exception:
                self.log.failure("observer failed on {what} of job {guid}",
                                 what=type(item).__name__, guid=item.guid)

    def entered(self: Observers[JobEvent], guid: str,
                states: Collection[JobState]) -> Deferred[JobEvent]:
        """
        Fire with the next event of job ``guid`` entering one of ``states``;
        cancel it to stop waiting.
        """

        def observe(event: JobEvent) -> None:
            if event.guid == guid and event.kind is EventKind.STATE and event.state in states:
                unsubscribe()
                d.callback(event)

        def cancel(_: Deferred[JobEvent]) -> None:
            unsubscribe()

        d: Deferred[JobEvent] = Deferred(cancel)
        unsubscribe: Callable[[], None] = self.subscribe(observe)
        return d
