"""
The records the durable store (:class:`~.store.Store`) reads and writes:
a job, a service, a web-hook and one of its undelivered records.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from turberfield_twisted.config.readers import frozen_map

__all__ = ["HookRecord", "JobRecord", "QueuedRecord", "ServiceRecord"]


@attrs.frozen
class JobRecord:
    """A job as the store keeps it. ``wanted`` is ``running`` or ``stopped``."""

    guid: str
    module: str
    session: str | None
    overrides: Mapping[str, str] = attrs.field(converter=frozen_map, repr=False)
    wanted: str = "running"
    declared: bool = False
    port: int = 0


@attrs.frozen
class ServiceRecord:
    """A service as the store keeps it, and the number its next instance takes."""

    name: str
    module: str
    session: str | None
    overrides: Mapping[str, str] = attrs.field(converter=frozen_map, repr=False)
    host: str = "127.0.0.1"
    port: int = 0
    instances: int = 1
    surge: int = 1
    max_unavailable: int = 0
    declared: bool = False
    next_instance: int = 1


@attrs.frozen
class QueuedRecord:
    """One undelivered web-hook record: its ``seq``, event name and exact body."""

    seq: int
    event: str
    body: bytes = attrs.field(repr=False)


@attrs.frozen
class HookRecord:
    """A web-hook as the store keeps it, with its undelivered records in order."""

    id: str
    url: str
    events: tuple[str, ...]
    secret: str = attrs.field(repr=False)
    seq: int = 0
    queued: tuple[QueuedRecord, ...] = ()
