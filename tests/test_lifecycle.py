"""
The job lifecycle, transition by transition, on a Clock with a fake launcher:
no process, no port, no sleep. Each test's docstring states its rule.
"""

from __future__ import annotations

import gc
import itertools
import signal
import weakref
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs, formatEvent

from turberfield_twisted import JobState, NoFreePort, SpawnFailed
from turberfield_twisted.config.settings import check_config
from turberfield_twisted.configtext import parse_config
from turberfield_twisted.jobs.job import ENDED, EventKind, Job
from turberfield_twisted.jobs.lifecycle import Lifecycle
from turberfield_twisted.jobs.supervision import RestartTracker
from turberfield_twisted.jobs.transitions import TRANSITIONS, Input
from turberfield_twisted.testing.fakes import FakeLauncher, InitiatorOnClock, initiator_on_clock

MOD = "some.worker"
LOW = 21000


def config_text(slots: int = 4, high: int = LOW + 9, **module: Any) -> str:
    keys = {"backoff_initial": 1, "backoff_factor": 2, "jitter": 0, "max_restarts": 3,
            "restart_window": 1000, **module}
    return (f"[init]\nchild_port_min = {LOW}\nchild_port_max = {high}\nready_timeout = 10\n"
            f"stop_timeout = 5\nmax_starting = {slots}\n\n[{MOD}]\n"
            + "".join(f"{k} = {v}\n" for k, v in keys.items()))


class World:
    """A Lifecycle on a Clock: its launcher, its events, and a probe per job to answer by hand."""

    def __init__(self, slots: int = 4, high: int = LOW + 9, **module: Any):
        self.settings = check_config(parse_config(config_text(slots, high, **module)), "init")
        self.clock = Clock()
        self.launcher = FakeLauncher()
        self.events: list[Any] = []
        self.probes: dict[str, Deferred[None]] = {}
        self.lifecycle = Lifecycle(self.clock, self.launcher, lambda: self.settings,
                                   probe=self._probe, render=lambda job: b"[cfg]\n",
                                   emit=self.events.append)
        self._names = (f"job-{n}" for n in itertools.count())

    def _probe(self, job: Job) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self.probes[job.guid] = d
        return d

    def new(self, start: bool = True) -> Job:
        """A new job of MOD, started unless told otherwise."""
        policy = self.settings.module(MOD).policy
        job = Job(guid=next(self._names), port=0, session=None, module=MOD, token="t",
                  tracker=RestartTracker(policy, lambda: 0.0))
        if start:
            self.lifecycle.start(job, new=True)
        return job

    def healthy(self, job: Job) -> None:
        """The job's worker answers its health check."""
        self.probes.pop(job.guid).callback(None)

    def worker(self, job: Job) -> Any:
        return self.launcher.latest(job.guid)

    def states(self, job: Job) -> list[str]:
        return [e.name for e in self.events if e.guid == job.guid and e.kind is EventKind.STATE]

    def pending(self) -> list[str]:
        return sorted(call.func.__name__ for call in self.clock.getDelayedCalls())


# -- the table, entry by entry --------------------------------------------------


@pytest.mark.parametrize(("source", "event"), sorted(TRANSITIONS, key=str))
def test_each_declared_transition_moves_and_emits_one_event(source, event):
    """Every (state, input) in TRANSITIONS moves the job to its target and emits one event."""
    w = World()
    job = w.new(start=False)
    job.state = source
    assert w.lifecycle.fire(job, event) is True
    target = TRANSITIONS[(source, event)]
    assert job.state is target
    [emitted] = w.events
    assert (emitted.kind, emitted.state, emitted.name, emitted.guid) == (
        EventKind.STATE, target, target.value, job.guid)


UNDECLARED = [(s, i) for s in JobState for i in Input if (s, i) not in TRANSITIONS]


@pytest.mark.parametrize(("source", "event"), UNDECLARED)
def test_an_undeclared_input_is_refused_logged_and_changes_nothing(source, event):
    """An input with no transition from the job's state: refused, logged with the guid."""
    w = World()
    job = w.new(start=False)
    job.state = source
    with capturedLogs() as logged:
        assert w.lifecycle.fire(job, event) is False
    assert job.state is source and w.events == []
    [line] = [e for e in logged if e.get("guid") == job.guid]
    assert line["log_level"] == LogLevel.warn
    assert formatEvent(line) == f"job {job.guid}: {event.value} refused while {source.value}"


def test_every_state_is_reachable_and_every_ended_state_can_start_again():
    """The table reaches every state from waiting, and exited and failed queue again."""
    seen, todo = {JobState.WAITING}, [JobState.WAITING]
    while todo:
        state = todo.pop()
        for (source, _), target in TRANSITIONS.items():
            if source is state and target not in seen:
                seen.add(target)
                todo.append(target)
    assert seen == set(JobState)
    assert all(TRANSITIONS[(state, Input.QUEUE)] is JobState.WAITING for state in ENDED)


# -- a job's life -----------------------------------------------------------------


def test_launch_waits_spawns_and_becomes_ready():
    """A new job: waiting, starting (spawned on the lowest port), ready; no timer left."""
    w = World()
    job = w.new()
    assert w.states(job) == ["waiting", "starting"]
    assert (job.port, w.worker(job).port, w.worker(job).config) == (LOW, LOW, b"[cfg]\n")
    assert w.pending() == ["_ready_timed_out"]
    w.healthy(job)
    assert w.states(job) == ["waiting", "starting", "ready"]
    assert w.pending() == [] and w.lifecycle.admission.starting == set()


def test_a_starting_job_is_killed_at_its_ready_timeout_and_backs_off():
    """Not ready within ready_timeout: SIGKILL, a failure saying so, then a restart at once."""
    w = World()
    job = w.new()
    worker = w.worker(job)
    w.clock.advance(9.9)
    assert worker.signals == []
    w.clock.advance(0.1)
    assert worker.signals[0] == signal.SIGKILL
    assert job.last_error == "not ready within 10s"
    assert w.states(job)[-3:] == ["backoff", "waiting", "starting"] and job.restarts == 1


def test_admission_lets_max_starting_jobs_start_and_times_each_from_its_spawn():
    """With one slot, the second job waits; its ready_timeout runs from its own spawn."""
    w = World(slots=1)
    first, second = w.new(), w.new()
    assert (first.state, second.state) == (JobState.STARTING, JobState.WAITING)
    assert len(w.launcher.spawned) == 1
    w.clock.advance(9)
    w.healthy(first)
    assert second.state is JobState.STARTING and second.started == 9
    worker = w.worker(second)
    w.clock.advance(9.9)
    assert second.state is JobState.STARTING and worker.signals == []
    w.clock.advance(0.1)
    assert worker.signals[0] == signal.SIGKILL


def test_hundred_launches_at_once_never_have_more_than_max_starting_starting():
    """A burst: at most max_starting are starting at any moment, and all become ready."""
    w = World(slots=2, high=LOW + 199)
    jobs = [w.new() for _ in range(100)]
    most = 0
    while w.probes:
        starting = [j for j in jobs if j.state is JobState.STARTING]
        most = max(most, len(starting))
        w.clock.advance(0.3)
        w.healthy(starting[0])
    assert most == 2
    assert all(j.state is JobState.READY for j in jobs)
    assert all(j.restarts == 0 for j in jobs) and w.pending() == []


def test_stop_while_waiting_ends_it_without_a_process():
    """Stopping a waiting job: exited at once, never spawned, its port and place freed."""
    w = World(slots=1)
    w.new()
    waiting = w.new()
    w.lifecycle.stop(waiting)
    assert waiting.state is JobState.EXITED and waiting.process is None
    assert w.states(waiting) == ["waiting", "exited"]
    assert waiting.port not in w.lifecycle.ports.held
    assert list(w.lifecycle.admission.waiting) == [] and len(w.launcher.spawned) == 1


def test_stop_sends_term_then_the_exit_ends_it():
    """A ready job asked to stop: stopping, SIGTERM to its group; its exit makes it exited."""
    w = World()
    job = w.new()
    w.healthy(job)
    w.lifecycle.stop(job)
    assert w.worker(job).signals[0] == signal.SIGTERM
    assert w.states(job)[-2:] == ["stopping", "exited"]
    assert job.status.signal == signal.SIGTERM and w.pending() == []


def test_a_workers_process_does_not_keep_its_ended_job():
    """
    A job's process reaches its job only weakly (its output lines): a job
    let go of is freed at once, not kept by its process, nor (as when the
    process held it strongly) in a cycle through it until the garbage
    collector's next full pass. Its lines until then are the job's.
    """
    w = World()
    job = w.new()
    w.healthy(job)
    worker = w.worker(job)
    worker.say("hello")
    assert [line["line"] for line in job.tail.lines()] == ["hello"]
    w.lifecycle.stop(job)
    assert job.state in ENDED
    gc.disable()
    try:
        gone = weakref.ref(job)
        del job
        assert gone() is None
        worker.say("after the job is gone")  # nobody keeps it: dropped, no error
    finally:
        gc.enable()


def test_a_worker_that_ignores_term_is_killed_after_stop_timeout():
    """SIGTERM ignored: SIGKILL after stop_timeout, then exited."""
    w = World()
    job = w.new()
    w.worker(job).dies_on = frozenset({signal.SIGKILL})
    w.lifecycle.stop(job)
    w.clock.advance(4.9)
    assert job.state is JobState.STOPPING
    w.clock.advance(0.1)
    assert w.worker(job).signals[:2] == [signal.SIGTERM, signal.SIGKILL]
    assert job.state is JobState.EXITED and w.pending() == []


def test_an_exit_during_stopping_is_exited_whatever_its_code():
    """A race: it crashes (exit 1) while stopping. It was asked to stop: exited, no backoff."""
    w = World()
    job = w.new()
    w.worker(job).dies_on = frozenset()
    w.lifecycle.stop(job)
    w.worker(job).exit(1)
    assert job.state is JobState.EXITED and job.status.code == 1
    assert w.pending() == [] and len(w.launcher.spawned) == 1


def test_stopping_a_starting_job_cancels_its_readiness_check():
    """A stop while starting cancels the health check; it never becomes ready."""
    w = World()
    job = w.new()
    probe = w.probes[job.guid]
    w.worker(job).dies_on = frozenset()
    w.lifecycle.stop(job)
    assert probe.called and job.readiness is None
    w.worker(job).exit(0)
    assert "ready" not in w.states(job)


def test_a_crash_backs_off_and_starts_again_through_waiting():
    """
    An unasked exit: backoff, the first restart at once, then waiting, starting,
    ready; the second waits backoff_initial.
    """
    w = World()
    job = w.new()
    w.healthy(job)
    w.worker(job).exit(1)
    assert job.state is JobState.BACKOFF and w.pending() == ["_restart_due"]
    w.clock.advance(0)
    w.healthy(job)
    assert w.states(job)[-5:] == ["ready", "backoff", "waiting", "starting", "ready"]
    assert job.restarts == 1 and job.port == LOW
    w.worker(job).exit(1)
    w.clock.advance(0.999)
    assert job.state is JobState.BACKOFF
    w.clock.advance(0.001)
    assert job.state is JobState.STARTING and job.restarts == 2


def test_stop_during_backoff_cancels_the_restart():
    """Stopped in backoff: exited at once, the restart cancelled, nothing spawned later."""
    w = World()
    job = w.new()
    w.worker(job).exit(1)
    w.lifecycle.stop(job)
    assert job.state is JobState.EXITED and w.pending() == []
    w.clock.advance(100)
    assert len(w.launcher.spawned) == 1


def test_too_many_restarts_give_up_and_a_failed_job_starts_again_when_asked():
    """Past max_restarts it is failed and stays so; start() brings it back with its guid."""
    w = World(max_restarts=1)
    job = w.new()
    w.worker(job).exit(1)
    w.clock.advance(1)
    w.worker(job).exit(1)
    assert job.state is JobState.FAILED
    assert job.last_error.startswith("gave up after 1 restarts within 1000s")
    w.clock.advance(1000)
    assert len(w.launcher.spawned) == 2
    job.tracker.clear()
    w.lifecycle.start(job)
    assert w.states(job)[-3:] == ["failed", "waiting", "starting"]


def test_a_clean_exit_of_a_ready_job_finishes_under_on_failure():
    """restart = on-failure: exit 0 from ready is exited, not restarted."""
    w = World()
    job = w.new()
    w.healthy(job)
    w.worker(job).exit(0)
    assert job.state is JobState.EXITED and job.last_error is None and w.pending() == []


def test_exit_75_while_starting_moves_to_the_next_port_at_once():
    """Exit 75 while starting: its port is busy, it waits and starts on the next; no restart."""
    w = World()
    job = w.new()
    w.worker(job).exit(75)
    assert w.states(job) == ["waiting", "starting", "waiting", "starting"]
    assert (job.port, job.busy_ports, job.restarts) == (LOW + 1, {LOW}, 0)
    assert w.worker(job).port == LOW + 1 and LOW not in w.lifecycle.ports.held


def test_exit_75_during_a_restart_moves_on_too():
    """A job restarting from backoff that meets a taken port moves on, not back to backoff."""
    w = World()
    job = w.new()
    w.healthy(job)
    w.worker(job).exit(1)
    w.clock.advance(1)
    w.worker(job).exit(75)
    assert job.state is JobState.STARTING and job.port == LOW + 1 and job.restarts == 1


def test_exit_75_with_no_port_left_fails():
    """Exit 75 with the whole range busy: failed, saying no port is free."""
    w = World(high=LOW)
    job = w.new()
    w.worker(job).exit(75)
    assert job.state is JobState.FAILED and "no free port" in job.last_error


def test_a_failed_spawn_fails_the_job_and_frees_its_slot():
    """SpawnFailed: the job is failed with the reason; the next waiting job is admitted."""
    w = World(slots=1)
    first = w.new()
    second = w.new()
    w.launcher.fail_spawn = OSError("no such file")
    third = w.new()  # waits; will fail when admitted
    w.healthy(first)
    assert second.state is JobState.FAILED and "no such file" in second.last_error
    assert third.state is JobState.FAILED
    assert w.lifecycle.admission.starting == set() and w.lifecycle.ports.held == {LOW: first}


def test_no_free_port_changes_nothing():
    """start() with no port left raises NoFreePort and emits nothing."""
    w = World(high=LOW)
    w.new()
    second = w.new(start=False)
    with pytest.raises(NoFreePort):
        w.lifecycle.start(second, new=True)
    assert w.states(second) == [] and second.state is JobState.WAITING


def test_a_spawn_failure_when_admitted_at_once_is_raised():
    """start() that can spawn at once and fails: SpawnFailed raised, the job failed."""
    w = World()
    w.launcher.fail_spawn = OSError("nope")
    job = w.new(start=False)
    with pytest.raises(SpawnFailed):
        w.lifecycle.start(job, new=True)
    assert w.states(job) == ["waiting", "failed"] and w.lifecycle.ports.held == {}


def test_an_observer_that_stops_a_job_on_starting_leaves_no_timer():
    """Stopped from inside its own 'starting' event: no readiness check or timeout is set."""
    w = World()

    job = w.new(start=False)

    def stop_on_starting(event: Any) -> None:
        if event.state is JobState.STARTING:
            w.lifecycle.stop(job)

    w.lifecycle._emit = lambda event: (w.events.append(event), stop_on_starting(event))
    w.lifecycle.start(job, new=True)
    assert job.state is JobState.EXITED and w.pending() == [] and w.probes == {}


# -- the Initiator on top -----------------------------------------------------------


def initiator(slots: int = 1, **module: Any) -> InitiatorOnClock:
    """An Initiator on a Clock with the kit's fake launcher; health checks answer at once."""
    return initiator_on_clock(config_text(slots, **module))


@pytest_twisted.ensureDeferred
async def test_an_observer_finds_the_job_in_the_table_on_its_first_event():
    """Every event, the first included, names a job the initiator already knows."""
    init = initiator().init
    found: list[str] = []
    init.subscribe(lambda event: found.append(init.job(event.guid).guid))
    guid = await init.launch(MOD)
    assert found == [guid, guid, guid]  # waiting, starting, ready


@pytest_twisted.ensureDeferred
async def test_stopping_the_service_ends_jobs_in_every_state():
    """stopService with jobs waiting, starting, ready, stopping, in backoff, exited, failed."""
    world = initiator(slots=1)
    init, clock, launcher, http = world.init, world.clock, world.launcher, world.health
    init.startService()
    ready = await init.launch(MOD)
    backoff = await init.launch(MOD)
    launcher.latest(backoff).exit(1)
    launcher.fail_spawn = OSError("no such file")
    with pytest.raises(SpawnFailed):
        await init.launch(MOD, guid="failed")
    launcher.fail_spawn = None
    stubborn = await init.launch(MOD)
    launcher.latest(stubborn).dies_on = frozenset({signal.SIGKILL})
    init.stop(stubborn)
    exited = await init.launch(MOD)
    init.stop(exited)
    http.healthy, http.silent = False, True
    starting = await init.launch(MOD)
    waiting = await init.launch(MOD)
    states = {g: init.job(g).state.value for g in (ready, backoff, "failed", stubborn, exited,
                                                   starting, waiting)}
    assert list(states.values()) == ["ready", "backoff", "failed", "stopping", "exited",
                                     "starting", "waiting"]
    spawned = len(launcher.spawned)
    done = init.stopService()
    assert not done.called  # the stubborn one waits for its SIGKILL
    clock.advance(5)
    assert done.called
    assert all(job.state in ENDED for job in init.workers.values())
    assert len(launcher.spawned) == spawned and clock.getDelayedCalls() == []


# -- the lifecycle, with any launcher that can't say where -----------------------------


def test_the_lifecycle_asks_nothing_until_a_remote_worker_says_where():
    """address() None: no health check until listening() fires with a host; then one there."""
    w = World()
    w.launcher.remote.add(MOD)
    job = w.new()
    assert job.state is JobState.STARTING and w.probes == {} and job.host == ""
    w.worker(job).located("10.0.0.7", job.port, "5.0")
    assert job.host == "10.0.0.7" and list(w.probes) == [job.guid]
    w.healthy(job)
    assert job.state is JobState.READY


def test_a_remote_worker_that_never_says_where_is_killed_at_ready_timeout():
    """No report within ready_timeout: SIGKILL, counted as a failed start."""
    w = World()
    w.launcher.remote.add(MOD)
    job = w.new()
    w.clock.advance(10)
    first = w.launcher.spawned[0]
    assert first.signals[0] == signal.SIGKILL and "not ready within 10s" in job.last_error
    assert job.restarts == 1  # restarted at once, as a failed start is
