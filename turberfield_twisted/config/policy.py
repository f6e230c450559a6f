"""
The per-module policies a config sets, as records: when a job that ended
unasked is started again (:class:`RestartPolicy`, with :func:`backoff`,
which web-hook retries share), and what a job may use (:class:`Limits`).

Pure values: the behaviour is in :mod:`turberfield_twisted.jobs.supervision`
and :mod:`turberfield_twisted.jobs.limits`.
"""

from __future__ import annotations

import resource
import signal
from collections.abc import Callable
from enum import StrEnum

import attrs

__all__ = ["LIMIT_KEYS", "Limits", "Restart", "RestartPolicy", "backoff", "explain_exit"]

def backoff(
    attempt: int,
    initial: float,
    factor: float,
    cap: float,
    jitter: float,
    draw: Callable[[], float],
) -> float:
    """
    The delay before try number ``attempt`` (from 0): ``initial *
    factor**attempt``, at most ``cap``, less up to ``jitter`` of it as
    ``draw()`` (uniform in [0, 1)) says. Restarts and web-hook retries
    both wait this long.
    """
    base = min(initial * factor ** min(attempt, 64), cap)
    return float(base * (1.0 - jitter * draw()))


class Restart(StrEnum):
    """When to restart a job that ended without being asked to stop."""

    ON_FAILURE = "on-failure"
    ALWAYS = "always"
    NEVER = "never"


def _positive(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must not be negative")


@attrs.frozen
class RestartPolicy:
    """
    The restart keys of a module section, with their defaults.

    A failure is an exit with a non-zero code or a signal, or a start that
    never became ready. The first restart (after a steady run, or ever)
    happens at once; from the second on, the delay starts at
    ``backoff_initial`` seconds, grows by ``backoff_factor`` up to
    ``backoff_cap``, and each is drawn uniformly from ``[d * (1 - jitter),
    d]``. More than ``max_restarts``
    restarts within ``restart_window`` seconds gives the job up. After
    ``reset_after`` seconds of steady running the backoff starts over.
    """

    restart: Restart = Restart.ON_FAILURE
    backoff_initial: float = attrs.field(default=1.0, validator=_positive)
    backoff_factor: float = attrs.field(default=2.0, validator=_positive)
    backoff_cap: float = attrs.field(default=60.0, validator=_positive)
    jitter: float = attrs.field(default=0.2, validator=_positive)
    max_restarts: int = 5
    restart_window: float = attrs.field(default=60.0, validator=_positive)
    reset_after: float = attrs.field(default=30.0, validator=_positive)

    def wants_restart(self, failed: bool) -> bool:
        """Whether a job that ended unasked (``failed`` or not) should run again."""
        if self.restart is Restart.ALWAYS:
            return True
        if self.restart is Restart.ON_FAILURE:
            return failed
        return False


#: The keys of a module or job section that set limits.
LIMIT_KEYS = ("max_memory", "max_open_files", "max_cpu_seconds")


@attrs.frozen
class Limits:
    """A job's limits; None is no limit."""

    max_memory: int | None = None
    max_open_files: int | None = None
    max_cpu_seconds: int | None = None

    def over(self, base: Limits) -> Limits:
        """These limits, taking ``base``'s where these set none."""
        return Limits(*(mine if mine is not None else theirs
                        for mine, theirs in zip(attrs.astuple(self), attrs.astuple(base),
                                                strict=True)))

    def rlimits(self) -> dict[int, int]:
        """The ``resource`` limits to set on a worker's process, by resource."""
        wanted = {resource.RLIMIT_NOFILE: self.max_open_files,
                  resource.RLIMIT_CPU: self.max_cpu_seconds}
        return {which: value for which, value in wanted.items() if value is not None}


def explain_exit(signal_number: int | None, limits: Limits | None) -> str:
    """What an unasked exit by ``signal_number`` may owe to ``limits`` ('' if nothing)."""
    if signal_number == signal.SIGKILL and limits is not None and limits.max_cpu_seconds:
        return (f" (max_cpu_seconds is {limits.max_cpu_seconds}: the kernel kills a worker"
                " that has used that much CPU time)")
    return ""
