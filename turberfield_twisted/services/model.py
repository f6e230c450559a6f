"""
What a service is: :class:`ServiceSpec`, what its operator asked for (a
module, how many instances, the address they share, how a rollout goes,
the keys each instance starts with), and :class:`RolloutView`, how its
last rollout went; the names of what can happen to a service
(:class:`ServiceEvent`).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

import attrs

from turberfield_twisted.config.readers import frozen_map
from turberfield_twisted.configtext import redact

__all__ = [
    "SERVICE_EVENTS",
    "RolloutState",
    "RolloutView",
    "ServiceEvent",
    "ServiceSpec",
    "format_listen",
]

class ServiceEvent(StrEnum):
    """What can happen to a service: a web-hook's ``service:NAME``, the stream's ``event``."""

    CREATED = "created"
    SCALED = "scaled"
    REMOVED = "removed"
    ROLLOUT_STARTED = "rollout_started"
    ROLLOUT_DONE = "rollout_done"
    ROLLOUT_FAILED = "rollout_failed"


#: Every name of :class:`ServiceEvent`.
SERVICE_EVENTS = frozenset(event.value for event in ServiceEvent)


class RolloutState(StrEnum):
    """Where a service's last rollout is."""

    #: New instances are started, old ones drained, one step at a time.
    RUNNING = "running"
    #: Every old instance was replaced by a ready new one.
    DONE = "done"
    #: A new instance failed or was not ready in time: the new ones that were
    #: not ready were stopped, the old ones kept (see ``reason``).
    FAILED = "failed"


@attrs.frozen
class RolloutView:
    """How a rollout went: its state, when, how many of ``total`` it replaced, why it failed."""

    state: RolloutState
    started: float
    total: int
    replaced: int = 0
    finished: float | None = None
    reason: str | None = None

    def as_json(self) -> dict[str, Any]:
        """What ``GET /services/{name}`` shows of it."""
        return {"state": self.state.value, "started": self.started,
                "finished": self.finished, "total": self.total, "replaced": self.replaced,
                "reason": self.reason}


def format_listen(host: str, port: int) -> str:
    """``HOST:PORT`` (``[HOST]:PORT`` for IPv6)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@attrs.frozen
class ServiceSpec:
    """
    A service as its operator asked for it: ``instances`` workers of
    ``module`` sharing a socket bound at ``host``:``port``, or (both None:
    a module Slurm runs) each on its own port on its node, reached through
    the service relay only, spread over nodes as ``spread`` says. A rollout starts
    up to ``surge`` new instances at once and never lets fewer than
    ``instances - max_unavailable`` be ready. Every instance starts with
    ``session`` and ``overrides`` (keys its module lists as overridable).
    ``declared``: made from a ``[service:NAME]`` section, not the API.
    """

    name: str
    module: str
    host: str | None
    port: int | None
    instances: int = 1
    surge: int = 1
    max_unavailable: int = 0
    session: str | None = None
    overrides: Mapping[str, str] = attrs.field(factory=dict, converter=frozen_map)
    declared: bool = False
    spread: str = "nodes"

    @property
    def listen(self) -> str | None:
        """Its shared address, ``HOST:PORT``; None if it has no shared socket."""
        if self.host is None or self.port is None:
            return None
        return format_listen(self.host, self.port)

    def code(self) -> tuple[str, str | None, Mapping[str, str]]:
        """What its instances run: a change of it is rolled out."""
        return self.module, self.session, self.overrides

    def as_json(self) -> dict[str, Any]:
        """Its keys as the API shows them (overrides as ``config``)."""
        shared = self.listen is not None
        return {"name": self.name, "module": self.module, "listen": self.listen,
                "relay": f"/services/{self.name}/proxy/",
                "spread": None if shared else self.spread,
                "instances": self.instances, "surge": self.surge,
                "max_unavailable": self.max_unavailable, "session": self.session,
                "config": redact(self.overrides), "declared": self.declared}
