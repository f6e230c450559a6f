"""
One state machine per job: every transition declared in
:data:`TRANSITIONS`, every timer on the injected reactor, and admission of
starts (at most ``max_starting`` jobs in ``starting`` at once).

The states and every transition between them are drawn and declared in
:mod:`turberfield_twisted.jobs.transitions`.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import attrs
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from turberfield_twisted.config.settings import Settings
from turberfield_twisted.errors import NoFreePort, SpawnFailed
from turberfield_twisted.jobs.admission import Admission
from turberfield_twisted.jobs.exits import MAX_PORT_RETRIES, Exits
from turberfield_twisted.jobs.job import ENDED, LIVE, Job, JobEvent, OutputLine
from turberfield_twisted.jobs.transitions import _B, _E, _S, _W, TRANSITIONS, Input
from turberfield_twisted.launch.interfaces import ILauncher, IWorkerProcess
from turberfield_twisted.launch.ports import PortBook

# MAX_PORT_RETRIES is re-exported: its home is :mod:`.exits`.
__all__ = ["MAX_PORT_RETRIES", "Lifecycle"]

@attrs.define(eq=False)
class Lifecycle(Exits):
    """
    Drive jobs through :data:`TRANSITIONS` on ``reactor``: ports and
    processes come from ``launcher``; ``probe(job)`` fires once a new
    worker answers (asked once the worker said where it listens, if its
    launcher can't tell); ``render(job)`` gives the config bytes for its
    stdin; ``emit`` gets every :class:`JobEvent`, ``output`` every line a
    worker writes (an :class:`OutputLine`).

    ``settings()`` gives the config in force: ``ready_timeout`` runs from
    a job's spawn, ``stop_timeout`` from its SIGTERM, at most
    ``max_starting`` jobs are starting at once, ports come from
    ``child_port_min``..``child_port_max`` (never one ``ports`` reserves) and
    a module's workers bind its ``listen_addr``. A job is spawned only
    once ``gate(job)`` is true (its required jobs are ready); its limits
    (``max_open_files``, ``max_cpu_seconds``) are set as it is spawned.
    """

    log = Logger()

    _reactor: IReactorTime = attrs.field(alias="reactor")
    launcher: ILauncher
    _settings: Callable[[], Settings] = attrs.field(alias="settings")
    _probe: Callable[[Job], Deferred[None]] = attrs.field(alias="probe")
    _render: Callable[[Job], bytes] = attrs.field(alias="render")
    _emit: Callable[[JobEvent], None] = attrs.field(alias="emit")
    _output: Callable[[OutputLine], None] = attrs.field(alias="output", default=lambda line: None)
    _gate: Callable[[Job], bool] = attrs.field(alias="gate", default=lambda job: True)
    #: Starting slots, and the jobs waiting for one.
    admission: Admission = attrs.field(init=False)
    #: Which job holds each port handed out, and the ports never handed out.
    ports: PortBook = attrs.field(init=False, factory=PortBook)
    _draining: bool = attrs.field(init=False, default=False)

    def __attrs_post_init__(self) -> None:
        self.admission = Admission(lambda: self._settings().initiator.max_starting,
                                   self._gate)

    # -- the machine -------------------------------------------------------

    def fire(self, job: Job, event: Input) -> bool:
        """
        Take ``job`` through the transition for ``event``: its state, the
        port and slot it holds, one log line and one :class:`JobEvent`.
        Refuse (log, change nothing, return False) if none is declared.
        """
        source = job.state
        target = TRANSITIONS.get((source, event))
        if target is None:
            self.log.warn("job {guid}: {input} refused while {state}", guid=job.guid,
                          input=event.value, state=source.value)
            return False
        job.state = target
        if target in ENDED:
            self.ports.release(job, job.port)
            job.ended = self._reactor.seconds()
        frees_slot = source is not target and source in (_S, _W) and target is not _S
        if frees_slot:
            self.admission.leave(job)
        self.log.info("job {guid} ({module}) {state}", guid=job.guid, module=job.module,
                      state=target.value, port=job.port, pid=job.pid)
        self._emit(job.event(self._reactor.seconds()))
        if frees_slot:
            self._drain()
        if target is _E and job.again:
            self._start_again(job)
        return True

    # -- asked from outside ------------------------------------------------

    def close(self) -> None:
        """The daemon stops: no job is given a starting slot from now on."""
        self.admission.closed = True

    def start(self, job: Job, new: bool = False, keep: Callable[[], None] | None = None) -> None:
        """
        Start ``job``: a ``new`` one, or one that ended or is in backoff.
        It holds a port, then ``keep()`` runs (if it raises, nothing has
        changed), then it waits for a starting slot and is spawned. Raise
        :class:`NoFreePort` (nothing changed) or :class:`SpawnFailed` (it
        is ``failed``, its ``last_error`` says why).
        """
        port = job.port
        self._hold_port(job)
        if keep is not None:
            try:
                keep()
            except BaseException:
                self.ports.release(job, job.port)
                job.port = port
                raise
        failed = self._join_queue(job, Input.LAUNCH if new else Input.QUEUE)
        if failed is not None:
            raise failed

    def restart(self, job: Job, keep: Callable[[], None] | None = None) -> None:
        """
        Stop ``job`` (as :meth:`stop` does), then start it again once it has
        exited; one that has ended starts at once (raising as :meth:`start`).
        ``keep()`` runs before anything changes (if it raises, nothing does).
        """
        if keep is not None and job.state not in ENDED:
            keep()  # before anything changes
            keep = None
        self.stop(job)  # on an ended job: nothing
        if job.state in ENDED:
            self.start(job, keep=keep)
        else:
            job.again = True  # fire() starts it on its way into exited

    def _start_again(self, job: Job) -> None:
        """Start ``job`` again: a restart asked, or one due after backoff."""
        job.again = False
        self._queue(job, Input.QUEUE)

    def stop(self, job: Job, timeout: float | None = None) -> None:
        """
        Ask ``job`` to stop: a waiting or backed-off one ends at once; a
        running one gets SIGTERM to its group, then SIGKILL after
        ``timeout`` (default ``stop_timeout``). Stopping a stopping or
        ended job changes nothing, but for a restart asked before: it is off.
        """
        job.again = False
        self._cancel(job, "restart")
        if job.state in (_W, _B):
            self.fire(job, Input.STOP)
            return
        process = job.process
        if job.state not in LIVE or process is None:
            return
        self._cancel(job, "ready_timeout")
        self._cancel_probe(job)
        self.fire(job, Input.STOP)
        self._terminate(job, process,
                        self._settings().initiator.stop_timeout if timeout is None else timeout)

    def over_limit(self, job: Job, reason: str) -> None:
        """
        ``job``'s worker went over one of its limits (``reason`` says which):
        SIGTERM to its group, SIGKILL after ``stop_timeout``; its exit then
        counts as a failure, restarted as its policy says, ``last_error``
        giving ``reason``.
        """
        process = job.process
        if process is None or job.state not in LIVE or job.limit_hit is not None:
            return
        job.limit_hit = reason
        self.log.warn("job {guid} is {reason}: stopping it to restart it", guid=job.guid,
                      reason=reason)
        self._terminate(job, process, self._settings().initiator.stop_timeout)

    def _line_sink(self, job: Job) -> Callable[[str, str], None]:
        """
        What ``job``'s process calls with each line: ``job`` held weakly, since
        the job holds the process (a strong reference back made every ended job
        a cycle that only the garbage collector's full pass freed). A job the
        table has let go of has no one to keep its lines for.
        """
        held = weakref.ref(job)

        def sink(stream: str, text: str) -> None:
            found = held()
            if found is not None:
                self.line(found, stream, text)

        return sink

    def line(self, job: Job, stream: str, text: str) -> None:
        """Keep one line of ``job``'s output, log it under its guid and pass it on."""
        now = self._reactor.seconds()
        job.tail.append(now, stream, text)
        self.log.info("job {guid} {stream}: {line}", guid=job.guid, stream=stream, line=text)
        self._output(OutputLine(job.guid, now, stream, text))

    # -- ports and slots ---------------------------------------------------

    def _listen_addr(self, module: str) -> str:
        found = self._settings().module(module)
        return found.listen_addr if found is not None else "127.0.0.1"

    def _hold_port(self, job: Job) -> None:
        """Give ``job`` a port (its own again where it can); NoFreePort changes nothing."""
        own = self._settings().initiator
        addr = self._listen_addr(job.module)
        port = self.ports.choose(
            range(own.child_port_min, own.child_port_max + 1), job,
            busy={*job.busy_ports, own.listen_port}, prefer=job.port or None,
            in_use=lambda port: self.launcher.port_in_use(job.module, addr, port))
        self.ports.hold(job, job.port, port)
        job.port = port

    def _queue(self, job: Job, event: Input) -> None:
        """
        Start ``job`` again as ``event`` says, raising nothing: it holds a
        port, waits for a starting slot and is spawned. With no port free
        it is failed (unless it has ended), ``last_error`` saying why.
        """
        try:
            self._hold_port(job)
        except NoFreePort as exc:
            job.last_error = str(exc)
            self.log.error("job {guid} could not start again: {error}", guid=job.guid,
                           error=str(exc))
            if job.state not in ENDED:
                self.fire(job, Input.GIVE_UP)
            return
        self._join_queue(job, event)

    def _join_queue(self, job: Job, event: Input) -> SpawnFailed | None:
        """``job``, holding a port, takes ``event`` and is spawned once it has a slot."""
        self.fire(job, event)
        return self._spawn(job) if self.admission.request(job) else None

    def gate_opened(self) -> None:
        """A gate may have opened (not on a job's change): spawn what it held, as slots allow."""
        self._drain()

    def _drain(self) -> None:
        """Spawn waiting jobs while starting slots are free."""
        if self._draining:
            return
        self._draining = True
        try:
            while (job := self.admission.next()) is not None:
                self._spawn(job)
        finally:
            self._draining = False

    # -- a process's life --------------------------------------------------

    def _spawn(self, job: Job) -> SpawnFailed | None:
        """Spawn ``job``; if it can't be, it is failed, and the error is returned."""
        addr = self._listen_addr(job.module)
        limits = self._settings().limits_for(job.module, job.guid if job.declared else None,
                                             job.service)
        try:
            config = self._render(job)
            process = self.launcher.spawn(job.module, job.guid, job.port, config,
                                          self._line_sink(job), limits, job.sockets)
        except SpawnFailed as exc:
            job.last_error = str(exc)
            self.log.error("job {guid} ({module}) could not be spawned: {error}",
                           guid=job.guid, module=job.module, error=str(exc))
            self.fire(job, Input.GIVE_UP)
            return exc
        host = self.launcher.address(job.module, addr)
        job.process = process
        job.host = host or ""  # "": only the worker can say, once it listens
        job.started = self._reactor.seconds()
        job.status = None
        job.timed_out = False
        job.limits, job.limit_hit = limits, None
        self.log.info("job {guid} spawned {module} pid {pid} port {port}", guid=job.guid,
                      module=job.module, pid=job.pid, port=job.port)
        self.fire(job, Input.SPAWN)
        process.exited().addCallback(self._exited, job, process)
        if job.process is not process or job.state is not _S:
            return None  # an observer of "starting" stopped it, or it is gone already
        self._later(job, "ready_timeout", self._settings().initiator.ready_timeout,
                    self._ready_timed_out, job, process)
        if host is None:  # it runs elsewhere: probe once it says where
            located = process.listening()
            job.readiness = located
            located.addCallbacks(self._located, self._probe_failed,
                                 callbackArgs=(job, process), errbackArgs=(job,))
        else:
            self._check(job, process)
        return None

    def _located(self, host: str | None, job: Job, process: IWorkerProcess) -> None:
        job.readiness = None
        if job.process is not process or job.state is not _S or not host:
            return
        job.host = host
        self.log.info("job {guid} says it listens on {host}:{port}", guid=job.guid,
                      host=host, port=job.port)
        self._check(job, process)

    def _check(self, job: Job, process: IWorkerProcess) -> None:
        """Confirm that ``job``'s new worker answers its health check."""
        probe = self._probe(job)
        job.readiness = probe
        probe.addCallbacks(self._healthy, self._probe_failed, callbackArgs=(job, process),
                           errbackArgs=(job,))

    def _healthy(self, _: object, job: Job, process: IWorkerProcess) -> None:
        job.readiness = None
        if job.process is not process:
            return  # an answer from a run that has ended
        if self.fire(job, Input.HEALTHY):
            self._cancel(job, "ready_timeout")
            if job.tracker is not None:
                job.tracker.ready(self._reactor.seconds())

    def _probe_failed(self, failure: Failure, job: Job) -> None:
        job.readiness = None
        if not failure.check(CancelledError):
            self.log.failure("job {guid}: the readiness check failed", failure=failure,
                             guid=job.guid)
