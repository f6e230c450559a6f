"""
A job's record, its states and its events.

:class:`~turberfield_twisted.contract.JobState` (part of the API's
contract, so that its clients share it) names every state once;
:class:`JobEvent` is the one
record observers, web-hooks, metrics and the API get for each transition
(and for each event a worker posts). The transitions themselves are
declared in :mod:`turberfield_twisted.jobs.transitions`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any

import attrs
from twisted.internet.defer import Deferred, DeferredLock
from twisted.internet.interfaces import IDelayedCall

from turberfield_twisted.config.policy import Limits, explain_exit
from turberfield_twisted.configtext import redact
from turberfield_twisted.contract import ENDED, JobState
from turberfield_twisted.jobs.supervision import RestartTracker
from turberfield_twisted.launch.interfaces import IWorkerProcess, ListenSocket
from turberfield_twisted.launch.protocol import ExitStatus, OutputTail

if TYPE_CHECKING:
    from turberfield_twisted.jobs.procstat import Reading

__all__ = [
    "ENDED",
    "LIVE",
    "EventKind",
    "Job",
    "JobEvent",
    "JobState",
    "OutputLine",
    "Wanted",
    "Worker",
]



#: States in which the job's worker runs and has not been asked to stop.
LIVE = frozenset({JobState.STARTING, JobState.READY})


class Wanted(StrEnum):
    """What the operator last asked of a job: a restarted daemon restores it so."""

    #: Launched or restarted: it should run.
    RUNNING = "running"
    #: Stopped: it stays down until it is restarted.
    STOPPED = "stopped"


class EventKind(StrEnum):
    """What a :class:`JobEvent` reports."""

    #: The job entered a state (``name`` is the state's value).
    STATE = "state"
    #: The job's worker posted an event (``name`` is the worker's name for it).
    WORKER = "worker"
    #: Something happened to a service (``name`` says what, ``guid`` is the service's
    #: name): made, scaled, removed, a rollout started, done or failed.
    SERVICE = "service"


@attrs.frozen
class JobEvent:
    """
    One thing that happened to a job: it entered ``state`` (``kind``
    STATE), or its worker posted event ``name`` with ``data`` (``kind``
    WORKER). The other fields are the job as it was then; ``service`` is
    the service it is an instance of, if it is one. An event of a service
    itself (``kind`` SERVICE) names the service in ``guid`` and ``service``,
    what happened in ``name`` and the rest in ``data``.
    """

    kind: EventKind
    name: str
    guid: str
    module: str
    time: float
    #: None in a service's own event.
    state: JobState | None
    port: int = 0
    pid: int | None = None
    restarts: int = 0
    last_error: str | None = None
    data: Any = None
    service: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The event as web-hooks and the event stream send it."""
        if self.kind is EventKind.SERVICE:
            return {"kind": self.kind.value, "event": self.name, "service": self.service,
                    "module": self.module, "time": self.time, "data": self.data}
        out: dict[str, Any] = {"kind": self.kind.value, "event": self.name, "guid": self.guid,
                               "module": self.module, "time": self.time}
        if self.service is not None:
            out["service"] = self.service
        if self.kind is EventKind.STATE:
            out.update(port=self.port, pid=self.pid, restarts=self.restarts,
                       last_error=self.last_error)
        else:
            out["data"] = self.data
        return out


@attrs.frozen
class OutputLine:
    """One line a job's worker wrote to ``stream`` ("stdout" or "stderr") at ``time``."""

    guid: str
    time: float
    stream: str
    line: str

    def as_json(self) -> dict[str, Any]:
        """The line as the event stream sends it."""
        return {"guid": self.guid, "time": self.time, "stream": self.stream, "line": self.line}


@attrs.define(eq=False)
class Job:
    """
    One job: ``guid``, ``port``, ``session``, ``module`` and ``process``
    (its worker process, while it has one) as in the seed API's
    ``Initiator.Worker``, plus what its lifecycle keeps: state, timers and
    restart history. Only :class:`~turberfield_twisted.jobs.lifecycle.Lifecycle`
    changes ``state``.
    """

    guid: str
    port: int
    session: str | None
    module: str
    process: IWorkerProcess | None = None
    token: str = attrs.field(default="", repr=False)
    host: str = "127.0.0.1"
    state: JobState = JobState.WAITING
    overrides: dict[str, str] = attrs.field(factory=dict)
    started: float | None = None
    #: When it last entered an ended state (None: never, as one restored stopped).
    ended: float | None = None
    status: ExitStatus | None = None
    restarts: int = 0
    last_error: str | None = None
    tail: OutputTail = attrs.field(factory=OutputTail, repr=False)
    tracker: RestartTracker | None = attrs.field(default=None, repr=False)
    busy_ports: set[int] = attrs.field(factory=set, repr=False)
    timed_out: bool = False
    calls: dict[str, IDelayedCall] = attrs.field(factory=dict, repr=False)
    #: What its start waits on: the worker's word that it listens, or its health check.
    readiness: Deferred[str | None] | Deferred[None] | None = attrs.field(default=None,
                                                                          repr=False)
    wanted: Wanted = Wanted.RUNNING
    declared: bool = False
    requires: tuple[str, ...] = ()
    limits: Limits | None = attrs.field(default=None, repr=False)
    limit_hit: str | None = None
    #: Start it again as soon as it has stopped (an operator's restart of a running job).
    again: bool = False
    #: Its module section's keys (resolved) as its worker was last started with them;
    #: None while it has no run (not started yet, or ended).
    module_keys: dict[str, str] | None = attrs.field(default=None, repr=False)
    #: Held while a live change of its config runs: changes run one at a time.
    config_lock: DeferredLock = attrs.field(factory=DeferredLock, repr=False)
    #: The last reading of its process group's memory and CPU time (:func:`~.procstat.job_stats`).
    usage: Reading | None = attrs.field(default=None, repr=False)
    #: The service it is an instance of (None: a job of its own).
    service: str | None = None
    #: The listening sockets its worker is handed at each start (its service's).
    sockets: tuple[ListenSocket, ...] = attrs.field(default=(), repr=False)
    #: Lines of its output that logs on disk dropped (the disk full, or the writer behind).
    log_dropped: int = 0

    def url(self, path: str = "") -> str:
        """``http://HOST:PORT`` + ``path``: where this job's worker listens (IPv6 bracketed)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{path}"

    @property
    def pid(self) -> int | None:
        """The worker's pid while it has a process."""
        return None if self.process is None else self.process.pid

    def event(self, time: float, kind: EventKind = EventKind.STATE, name: str | None = None,
              data: Any = None) -> JobEvent:
        """A :class:`JobEvent` of this job as it is now."""
        return JobEvent(kind=kind, name=self.state.value if name is None else name,
                        guid=self.guid, module=self.module, time=time, state=self.state,
                        port=self.port, pid=self.pid, restarts=self.restarts,
                        last_error=self.last_error, data=data, service=self.service)

    def failure(self, status: ExitStatus, ready_timeout: float) -> str:
        """Why this run failed, with its last stderr lines (else its stdout)."""
        cause = (self.limit_hit or (f"not ready within {ready_timeout:g}s" if self.timed_out
                 else status.describe() + explain_exit(status.signal, self.limits)))
        lines = (self.tail.last(3, since=self.started, stream="stderr")
                 or self.tail.last(3, since=self.started))
        tail = " | ".join(line[:500] for line in lines)
        return f"{cause}: {tail}" if tail else cause

    def as_json(self) -> dict[str, Any]:
        """The public view of this job: no token, no process object."""
        return {
            "guid": self.guid,
            "module": self.module,
            "port": self.port,
            "session": self.session,
            "state": self.state.value,
            "pid": self.pid,
            "started": self.started,
            "exit_code": self.status.code if self.status else None,
            "exit_signal": self.status.signal if self.status else None,
            "restarts": self.restarts,
            "last_error": self.last_error,
            "config": redact(self.overrides),
            "wanted": self.wanted.value,
            "declared": self.declared,
            "requires": list(self.requires),
            "service": self.service,
            "log_dropped": self.log_dropped,
        }


#: The seed API's name for a job record.
Worker = Job
