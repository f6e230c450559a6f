"""
:class:`EventLog`: the events a worker posted to its initiator, as a test
sees them, whether the worker runs in memory or in a process.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, overload

from twisted.internet.defer import Deferred, succeed

__all__ = ["EventLog"]


class EventLog(Sequence[tuple[str, Any]]):
    """
    ``(name, data)`` of each event posted, in order (it compares equal to
    a list of them). :meth:`next` hands them out one at a time, waiting
    for the next one if it has not come yet.
    """

    def __init__(self, reactor: Any):
        self._reactor = reactor
        self._posted: list[tuple[str, Any]] = []
        self._read = 0
        self._waiting: list[Deferred[tuple[str, Any]]] = []

    def __repr__(self) -> str:
        return f"EventLog({self._posted!r})"

    @overload
    def __getitem__(self, index: int) -> tuple[str, Any]: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[tuple[str, Any]]: ...

    def __getitem__(self, index: int | slice) -> Any:
        return self._posted[index]

    def __len__(self) -> int:
        return len(self._posted)

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        return iter(list(self._posted))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, EventLog):
            other = other._posted
        return isinstance(other, Sequence) and self._posted == list(other)

    __hash__ = None  # type: ignore[assignment]

    def names(self) -> list[str]:
        """The names of the events, in order."""
        return [name for name, _ in self._posted]

    def add(self, name: str, data: Any = None) -> None:
        """An event came: keep it and wake the oldest :meth:`next` waiting."""
        self._posted.append((name, data))
        if self._waiting:
            self._read += 1
            self._waiting.pop(0).callback((name, data))

    def next(self, timeout: float = 10.0) -> Deferred[tuple[str, Any]]:
        """
        The first event :meth:`next` has not handed out yet, at once if it
        has come; else wait for it, failing with ``TimeoutError`` after
        ``timeout`` seconds (on the log's reactor).
        """
        if self._read < len(self._posted) and not self._waiting:
            self._read += 1
            return succeed(self._posted[self._read - 1])

        def cancel(d: Deferred[tuple[str, Any]]) -> None:
            if d in self._waiting:
                self._waiting.remove(d)

        d: Deferred[tuple[str, Any]] = Deferred(cancel)
        self._waiting.append(d)
        return d.addTimeout(timeout, self._reactor)
