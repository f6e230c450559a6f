"""
What can go wrong with a job, as exceptions that say what happened.

The control API maps each to one HTTP status in one table
(:data:`turberfield_twisted.http.statuses.STATUSES`); only :class:`Invalid` and its
kind are the caller's fault (400). No message here ever quotes a config
value or a token.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = [
    "ApiError",
    "BadGuid",
    "BadOverride",
    "CannotForget",
    "ChangeRefused",
    "ConfigError",
    "ConfigPushFailed",
    "DaemonStopping",
    "GuidTaken",
    "Invalid",
    "JobExited",
    "MethodNotAllowed",
    "NoFreePort",
    "NotReady",
    "OverMaxInstances",
    "OverrideNotAllowed",
    "PlacementRefused",
    "PlacementUnchecked",
    "RouteNotFound",
    "ServiceConflict",
    "SpawnFailed",
    "StateDirBusy",
    "StateDirError",
    "StateFileError",
    "StoreFailed",
    "TransportError",
    "Unknown",
    "UnknownHook",
    "UnknownJob",
    "UnknownModule",
    "UnknownService",
]

class ConfigError(ValueError):
    """
    A config could not be read. ``source`` and ``line`` say where; the
    message says why, and never quotes a value.
    """

    def __init__(self, reason: str, source: str = "<config>", line: int | None = None):
        self.reason = reason
        self.source = source
        self.line = line
        where = source if line is None else f"{source}, line {line}"
        super().__init__(f"{where}: {reason}")


class StateDirError(Exception):
    """The state directory can't be used: the message says which and why."""


class StateDirBusy(StateDirError):
    """Another daemon holds the state directory's lock; ``pid`` is its pid, if known."""

    def __init__(self, path: Path, pid: int | None):
        self.path = path
        self.pid = pid
        holder = f"pid {pid}" if pid is not None else "a process whose pid is not known yet"
        super().__init__(f"the state directory {path} is in use by another daemon ({holder})")


class StateFileError(StateDirError):
    """
    File ``path`` of the state directory, holding ``what``, can't be read
    (``reason`` says why) or holds nothing (``reason`` is None).
    """

    def __init__(self, path: Path, what: str, reason: str | None = None):
        self.path = path
        self.what = what
        self.reason = reason
        super().__init__(f"cannot read {what} from {path}: {reason}" if reason is not None
                         else f"{path} holds no {what}")


class Invalid(ValueError):
    """The caller's input is malformed: a validation error."""


class BadGuid(Invalid):
    """A guid given for a new job is malformed, taken, or names a config section."""


class GuidTaken(Exception):
    """A guid given for a new job is another job's, or names a config section."""


class BadOverride(Invalid):
    """A per-job override is malformed (not a mapping of short keys to one-line values)."""


class OverrideNotAllowed(ValueError):
    """A per-job override names a key its module section does not allow."""


class Unknown(KeyError):
    """Nothing of this kind has that name; ``what`` says the kind."""

    what = "thing"

    def __init__(self, name: str):
        self.name = name
        super().__init__(name)

    def __str__(self) -> str:
        return f"no {self.what} {self.name[:80]!r}"


class UnknownJob(Unknown):
    """No job has that guid."""

    what = "job"

    @property
    def guid(self) -> str:
        """The guid asked for."""
        return self.name


class UnknownHook(Unknown):
    """No web-hook has that id."""

    what = "hook"


class UnknownService(Unknown):
    """No service has that name."""

    what = "service"


class UnknownModule(LookupError):
    """The module named for a job can't be found, isn't allowed, or isn't a valid name."""

    def __init__(self, module: str, reason: str = "no such module"):
        self.module = module
        self.reason = reason
        super().__init__(f"module {module[:200]!r}: {reason}")


class NoFreePort(Exception):
    """Every port of the child range is taken."""

    def __init__(self, guid: str, low: int, high: int):
        self.guid = guid
        self.low = low
        self.high = high
        super().__init__(f"no free port left in {low}-{high} (initiator {guid})")


class SpawnFailed(Exception):
    """The operating system refused to start the worker process."""


class NotReady(Exception):
    """A job did not answer its health check in time."""


class JobExited(Exception):
    """A job ended while something waited for it to become ready."""

    def __init__(self, guid: str, status: object, last_error: str | None):
        self.guid = guid
        self.status = status
        super().__init__(f"job {guid} ended ({last_error or 'no reason given'})")


class ConfigPushFailed(Exception):
    """A worker could not be sent its new config; ``status`` is None if it was not reached."""

    def __init__(self, guid: str, reason: str, status: int | None = None):
        self.guid = guid
        self.status = status
        super().__init__(f"job {guid} did not take its new config: {reason}")


class ChangeRefused(Exception):
    """A job's worker refused a live config change (its ``on_config`` raised): ``reason``."""

    def __init__(self, guid: str, reason: str):
        self.guid = guid
        self.reason = reason[:300]
        super().__init__(f"job {guid} refused the change: {self.reason}")


class PlacementRefused(Exception):
    """A worker's report of where it listens disagrees with where its launcher runs it."""


class PlacementUnchecked(Exception):
    """Where a worker runs could not be asked of its launcher (say, Slurm did not answer)."""


class OverMaxInstances(Exception):
    """More instances of a service are asked for than the daemon's ``max_instances``."""


class ServiceConflict(Exception):
    """
    A service can't be made or changed as asked, as things are: its name is
    taken, its address is held by another process, a rollout is running.
    """


class CannotForget(Exception):
    """
    A job can't be forgotten: it has not ended, or a config file declares it.
    The message says what to do.
    """


class StoreFailed(Exception):
    """The durable store could not be read or written; the message says which and why."""


class DaemonStopping(Exception):
    """
    The daemon has begun to stop: it takes no change (a launch, stop,
    restart, config change, reload or web-hook) from then on. Ask again
    once it runs again, ``retry_after`` seconds from now at the soonest.
    """

    #: Seconds a caller waits before it asks again (the answer's ``Retry-After``).
    retry_after = 5

    def __init__(self) -> None:
        super().__init__("the daemon is stopping")


class ApiError(Exception):
    """
    An HTTP answer other than success: its ``status``, ``message`` and any
    extra ``headers``. A client raises it when a server answered so; a
    route raises it to answer so.
    """

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None):
        self.status = status
        self.message = message
        self.headers = dict(headers or {})
        suffix = f"HTTP {status}"
        super().__init__(message if message == suffix else f"{message} ({suffix})")


class RouteNotFound(Exception):
    """No route of the control API answers the request's path (404 ``not found``)."""


class MethodNotAllowed(Exception):
    """
    Routes answer the request's path, but not its method: they answer
    ``allowed`` (405 ``method not allowed``, with ``Allow``).
    """

    def __init__(self, allowed: Sequence[str]):
        self.allowed = tuple(allowed)
        super().__init__(f"only {', '.join(self.allowed)}")


class TransportError(Exception):
    """A server could not be reached, or did not answer in time."""
