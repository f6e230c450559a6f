"""
Restart policy: when a job that ended unasked is started again, after how
long, and when it is given up as ``failed``.

Pure logic over timestamps: no reactor, no processes. The lifecycle
(:class:`~turberfield_twisted.jobs.lifecycle.Lifecycle`) feeds it what
happened and schedules the restart it asks for on its reactor.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable

import attrs

from turberfield_twisted.config.policy import RestartPolicy, backoff

__all__ = ["RestartTracker"]

@attrs.define
class RestartTracker:
    """
    One job's restart history under a :class:`RestartPolicy`.

    ``random`` draws the jitter; tests pass a fixed one. ``gave_up`` says
    whether the last :meth:`next_restart` refused because the job was
    flapping (more than ``max_restarts``, when some are allowed), as
    opposed to the policy not wanting a restart.
    """

    policy: RestartPolicy
    random: Callable[[], float] = random.random
    attempt: int = 0
    restarts: deque[float] = attrs.field(factory=deque)
    ready_since: float | None = None
    gave_up: bool = False

    def ready(self, now: float) -> None:
        """The job answered its health check at ``now``."""
        self.ready_since = now

    def delay(self, attempt: int) -> float:
        """
        The delay before restart number ``attempt`` (0-based): none for the
        first, then the backoff from ``backoff_initial``, jitter included.
        """
        if attempt <= 0:
            return 0.0
        p = self.policy
        return backoff(attempt - 1, p.backoff_initial, p.backoff_factor, p.backoff_cap,
                       p.jitter, self.random)

    def next_restart(self, now: float, failed: bool) -> float | None:
        """
        The job ended unasked at ``now``. Return the delay before it starts
        again, or None if it stays down (policy says so, or it is flapping).
        """
        p = self.policy
        self.gave_up = False
        if self.ready_since is not None and now - self.ready_since >= p.reset_after:
            self.attempt = 0
        self.ready_since = None
        if not p.wants_restart(failed):
            return None
        while self.restarts and now - self.restarts[0] > p.restart_window:
            self.restarts.popleft()
        if len(self.restarts) >= p.max_restarts:
            self.gave_up = p.max_restarts > 0  # with none allowed, none was refused
            return None
        self.restarts.append(now)
        delay = self.delay(self.attempt)
        self.attempt += 1
        return delay

    def clear(self) -> None:
        """Forget the history: the job was asked to start afresh."""
        self.attempt = 0
        self.restarts.clear()
        self.ready_since = None
        self.gave_up = False
