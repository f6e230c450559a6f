"""
Who hears of what happens to jobs: lists of observers, each told of every
:class:`~turberfield_twisted.jobs.job.JobEvent` (or every
:class:`~turberfield_twisted.jobs.job.OutputLine`), and a Deferred way to wait
for one job to reach a state.

Waits are kept by guid, apart from the observers: an event is looked at
only by the waits on its own job, so a hundred clients each waiting on
their own job (``GET /jobs/{guid}?wait=ready``) cost each event one
lookup, not a hundred calls.
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
        #: Waits by guid: the states each waits for, and its Deferred.
        self._waits: dict[str, list[tuple[Collection[JobState], Deferred[JobEvent]]]] = {}

    def __len__(self) -> int:
        """Observers and waits."""
        return len(self._observers) + sum(map(len, self._waits.values()))

    def subscribe(self, observer: Callable[[T], None]) -> Callable[[], None]:
        """Call ``observer(item)`` on every item; return an unsubscriber."""
        self._observers.append(observer)

        def unsubscribe() -> None:
            if observer in self._observers:
                self._observers.remove(observer)

        return unsubscribe

    def emit(self, item: T) -> None:
        """
        Tell every observer of ``item``, in the order they subscribed; then
        fire the waits of its job that it ends (see :meth:`entered`).
        """
        for observer in list(self._observers):
            try:
                observer(item)
            except Exception:
                self.log.failure("observer failed on {what} of job {guid}",
                                 what=type(item).__name__, guid=item.guid)
        if item.guid in self._waits and isinstance(item, JobEvent):
            self._ended_waits(item)

    def _ended_waits(self, event: JobEvent) -> None:
        if event.kind is not EventKind.STATE:
            return
        waits = self._waits[event.guid]
        done = [d for states, d in waits if event.state in states]
        if not done:
            return
        waits[:] = [(states, d) for states, d in waits if d not in done]
        if not waits:
            del self._waits[event.guid]
        for d in done:
            d.callback(event)

    def entered(self, guid: str, states: Collection[JobState]) -> Deferred[JobEvent]:
        """
        Fire with the next event of job ``guid`` entering one of ``states``;
        cancel it to stop waiting.
        """

        def cancel(d: Deferred[JobEvent]) -> None:
            waits = self._waits.get(guid, [])
            waits[:] = [wait for wait in waits if wait[1] is not d]
            if not waits:
                self._waits.pop(guid, None)

        d: Deferred[JobEvent] = Deferred(cancel)
        self._waits.setdefault(guid, []).append((states, d))
        return d
