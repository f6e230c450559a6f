"""Restart policy on a fake process reactor: the Clock drives every delay; no process runs."""

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred, succeed

from turberfield_twisted import Initiator, JobExited, LocalLauncher
from turberfield_twisted.config.policy import RestartPolicy
from turberfield_twisted.configtext import parse_config
from turberfield_twisted.jobs.supervision import RestartTracker
from turberfield_twisted.testing.configs import initiator_config
from turberfield_twisted.testing.fakes import FakeHealth, FakeProcessReactor

MOD = "turberfield_twisted.testing.crash"
LOW, HIGH = 23100, 23119

POLICY = {
    "restart": "on-failure",
    "backoff_initial": "1",
    "backoff_factor": "2",
    "backoff_cap": "5",
    "jitter": "0.5",
    "max_restarts": "10",
    "restart_window": "1000",
    "reset_after": "30",
}


class _Response:
    """A health answer of the tests' own making."""

    code = 200

    def content(self):
        return succeed(b'{"status": "ok"}')


def make(healthy=True, random=lambda: 0.0, **policy):
    """A fake reactor and an Initiator whose module MOD has ``POLICY`` updated by ``policy``."""
    keys = {**POLICY, **{k: str(v) for k, v in policy.items()}}
    own = {k: keys.pop(k) for k in ("ready_timeout", "stop_timeout") if k in keys}
    extra = f"[{MOD}]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items())
    reactor = FakeProcessReactor()
    launcher = LocalLauncher(reactor, python="/py", setsid=None, process_groups=False)
    health = FakeHealth()
    health.healthy = healthy
    init = Initiator(None, guid="init", cfg=initiator_config(LOW, HIGH, extra=extra, **own),
                     reactor=reactor, launcher=launcher, http=health, random=random)
    return reactor, init


def restart_delay(reactor):
    """The delay of the pending restart (health probes may be pending too), or None."""
    calls = [c for c in reactor.getDelayedCalls()
             if getattr(c.func, "__name__", "") == "_restart_due"]
    assert len(calls) <= 1
    return calls[0].getTime() - reactor.seconds() if calls else None


def crash(reactor, code=1, signal=None):
    """End the latest fake process unasked; return the restart delay, if one is pending."""
    reactor.spawned[-1].exit(code, signal)
    return restart_delay(reactor)


# -- the tracker alone --------------------------------------------------------


def test_tracker_restarts_at_once_then_backs_off_by_the_factor_up_to_the_cap():
    """The first restart is at once; then initial * factor**n, capped (exact with no jitter)."""
    policy = RestartPolicy(backoff_initial=0.5, backoff_factor=3, backoff_cap=10, max_restarts=99,
                           restart_window=1e9)
    tracker = RestartTracker(policy, random=lambda: 0.0)
    delays = [tracker.next_restart(float(t), failed=True) for t in range(7)]
    assert delays == [0, 0.5, 1.5, 4.5, 10, 10, 10]


def test_tracker_jitter_stays_within_its_bounds():
    """Each delay is drawn from [d * (1 - jitter), d]: random 0 gives d, random 1 the low end."""
    policy = RestartPolicy(backoff_initial=2, backoff_factor=1, jitter=0.25)
    assert RestartTracker(policy, random=lambda: 0.0).delay(1) == 2
    assert RestartTracker(policy, random=lambda: 1.0).delay(1) == 1.5
    assert RestartTracker(policy, random=lambda: 0.5).delay(1) == 1.75
    assert RestartTracker(policy, random=lambda: 0.5).delay(0) == 0  # the first: at once
    drawn = [RestartTracker(policy).delay(n) for n in range(1, 501)]
    assert all(1.5 <= d <= 2 for d in drawn)
    assert len(set(drawn)) > 1


def test_tracker_window_slides():
    """Only restarts within restart_window count towards max_restarts."""
    policy = RestartPolicy(max_restarts=2, restart_window=10)
    tracker = RestartTracker(policy, random=lambda: 0.0)
    assert tracker.next_restart(0, True) is not None
    assert tracker.next_restart(5, True) is not None
    assert tracker.next_restart(9, True) is None and tracker.gave_up
    assert tracker.next_restart(11, True) is not None and not tracker.gave_up


# -- the Initiator on the Clock -----------------------------------------------


@pytest_twisted.ensureDeferred
async def test_backoff_sequence_on_the_clock():
    """The first unasked failure restarts at once, then after each backoff: 1, 2, 4, 5 (capped)."""
    reactor, init = make()
    guid = await init.launch(MOD)
    assert init.job(guid).state == "ready"
    delays = []
    for _ in range(5):
        delay = crash(reactor)
        assert init.job(guid).state == "backoff"
        delays.append(delay)
        spawned = len(reactor.spawned)
        if delay:
            reactor.advance(delay - 0.001)
            assert len(reactor.spawned) == spawned
        reactor.advance(0.002)
        assert len(reactor.spawned) == spawned + 1
        assert init.job(guid).state == "ready"
    assert delays == pytest.approx([0, 1, 2, 4, 5])
    assert init.job(guid).restarts == 5


@pytest_twisted.ensureDeferred
async def test_jitter_shortens_the_delay_by_at_most_its_fraction():
    """With jitter 0.5 and random() at its top, the delay is half the backoff."""
    reactor, init = make(random=lambda: 0.999999)
    await init.launch(MOD)
    reactor.advance(crash(reactor))  # the first: at once
    assert crash(reactor) == pytest.approx(0.5, abs=1e-5)


@pytest_twisted.ensureDeferred
async def test_backoff_resets_after_steady_running():
    """Ready for reset_after seconds: the next failure starts the backoff over; shorter: not."""
    reactor, init = make()
    await init.launch(MOD)
    reactor.advance(crash(reactor))  # at once
    reactor.advance(crash(reactor))  # 1
    reactor.advance(29)  # ready, but not for long enough
    delay = crash(reactor)
    assert delay == pytest.approx(2)
    reactor.advance(delay)
    reactor.advance(30)  # ready for reset_after
    assert crash(reactor) == 0


@pytest_twisted.ensureDeferred
async def test_flapping_limit_gives_up():
    """More than max_restarts failures within restart_window: failed, and it stays down."""
    reactor, init = make(max_restarts=3, restart_window=60)
    guid = await init.launch(MOD)
    for _ in range(3):
        reactor.advance(crash(reactor))
    assert crash(reactor) is None
    job = init.job(guid)
    assert job.state == "failed"
    assert job.restarts == 3
    assert job.last_error.startswith("gave up after 3 restarts within 60s; last: exit 1")
    reactor.advance(1000)
    assert len(reactor.spawned) == 4
    assert reactor.getDelayedCalls() == []


@pytest_twisted.ensureDeferred
async def test_a_failed_job_comes_back_only_when_asked():
    """restart(guid) brings a failed job back under its guid and port, its history cleared."""
    reactor, init = make(max_restarts=1)
    guid = await init.launch(MOD, session="s")
    port = init.job(guid).port
    reactor.advance(crash(reactor))
    assert crash(reactor) is None and init.job(guid).state == "failed"
    job = init.restart(guid)
    assert (job.state, job.guid, job.session, job.port) == ("ready", guid, "s", port)
    assert len(reactor.spawned) == 3
    assert crash(reactor) == 0  # the backoff starts over, and so does the window


@pytest_twisted.ensureDeferred
async def test_restart_of_a_running_job_stops_it_then_starts_it_again():
    """restart(guid) of a ready job: TERM, and once it has exited it starts again."""
    reactor, init = make()
    guid = await init.launch(MOD)
    first = reactor.spawned[-1]
    job = init.restart(guid)
    assert job.state == "stopping" and first.signals == ["TERM"]
    states = []
    init.subscribe(lambda event: states.append(event.name))
    first.exit(0)
    assert states == ["exited", "waiting", "starting", "ready"]
    assert len(reactor.spawned) == 2 and job.restarts == 0


@pytest_twisted.ensureDeferred
async def test_a_stop_while_restarting_wins():
    """An operator's stop after a restart was asked: it stays exited."""
    reactor, init = make()
    guid = await init.launch(MOD)
    init.restart(guid)
    init.stop(guid)
    reactor.spawned[-1].exit(0)
    assert init.job(guid).state == "exited" and len(reactor.spawned) == 1


@pytest_twisted.ensureDeferred
async def test_failures_spread_wider_than_the_window_keep_restarting():
    """Failures further apart than restart_window never add up to the limit."""
    reactor, init = make(max_restarts=2, restart_window=10, backoff_cap=1)
    guid = await init.launch(MOD)
    for _ in range(6):
        reactor.advance(crash(reactor))
        reactor.advance(11)
    assert init.job(guid).state == "ready"
    assert init.job(guid).restarts == 6


@pytest_twisted.ensureDeferred
async def test_stop_during_backoff_cancels_the_restart():
    """stop() while a restart is pending: exited at once, nothing scheduled, nothing spawned."""
    reactor, init = make()
    guid = await init.launch(MOD)
    crash(reactor)
    assert init.job(guid).state == "backoff"
    first, second = init.stop(guid), init.stop(guid)
    assert (await first).code == 1 and (await second).code == 1
    assert init.job(guid).state == "exited"
    assert reactor.getDelayedCalls() == []
    reactor.advance(100)
    assert len(reactor.spawned) == 1


@pytest_twisted.ensureDeferred
async def test_stop_service_ends_jobs_in_backoff():
    """stopService leaves no job in backoff and no call pending."""
    reactor, init = make()
    init.startService()
    guid = await init.launch(MOD)
    crash(reactor)
    await init.stopService()
    assert init.job(guid).state == "exited"
    assert reactor.getDelayedCalls() == []


@pytest_twisted.ensureDeferred
async def test_health_answer_after_stop_does_not_make_it_ready():
    """A health check that answers once stop() has begun leaves the job stopping."""
    reactor, init = make()
    answer = Deferred()
    init.http.get = lambda url, timeout, reactor: answer
    guid = await init.launch(MOD)
    done = init.stop(guid)
    answer.callback(_Response())
    assert init.job(guid).state == "stopping"
    reactor.spawned[-1].exit(0)
    assert (await done).code == 0
    assert init.job(guid).state == "exited"


@pytest_twisted.ensureDeferred
async def test_health_answer_naming_another_guid_is_not_ready():
    """A worker of someone else's on the job's port (its /health names another guid) is not it."""
    reactor, init = make(ready_timeout=2)
    stranger = _Response()
    stranger.content = lambda: succeed(b'{"status": "ok", "guid": "someone-else"}')
    init.http.get = lambda url, timeout, reactor: succeed(stranger)
    guid = await init.launch(MOD, guid="mine")
    reactor.advance(1)
    assert init.job(guid).state == "starting"
    stranger.content = lambda: succeed(b'{"status": "ok", "guid": "mine"}')
    reactor.advance(0.5)
    assert init.job(guid).state == "ready"


@pytest_twisted.ensureDeferred
async def test_ready_timeout_kills_a_job_that_never_answers_and_counts_a_failure():
    """Not ready within ready_timeout: SIGKILL, a failure with the reason, then backoff."""
    reactor, init = make(healthy=False, ready_timeout=2)
    guid = await init.launch(MOD)
    waiting = init.ready(guid, timeout=100)
    proc = reactor.spawned[-1]
    reactor.advance(1.9)
    assert proc.signals == [] and init.job(guid).state == "starting"
    reactor.advance(0.1)
    assert proc.signals == ["KILL"]
    proc.exit(signal=9)
    job = init.job(guid)
    assert job.state == "backoff"
    assert job.last_error == "not ready within 2s"
    assert len(job.tracker.restarts) == 1
    init.http.healthy = True
    reactor.advance(restart_delay(reactor))
    assert (await waiting) is job and job.state == "ready"


@pytest_twisted.ensureDeferred
async def test_ready_timeout_with_no_restarts_left_fails_the_waiter():
    """A never-ready job with max_restarts 0 ends failed; ready() fails with JobExited."""
    reactor, init = make(healthy=False, ready_timeout=1, max_restarts=0)
    guid = await init.launch(MOD)
    waiting = init.ready(guid, timeout=100)
    reactor.advance(1)
    reactor.spawned[-1].exit(signal=9)
    assert init.job(guid).state == "failed"
    with pytest.raises(JobExited, match="not ready within 1s"):
        await waiting


@pytest_twisted.ensureDeferred
async def test_exit_75_moves_to_the_next_port_at_once():
    """A starting worker that can't bind exits 75: its port is busy, it relaunches on the next."""
    reactor, init = make(healthy=False)
    guid = await init.launch(MOD)
    assert init.job(guid).port == LOW
    assert crash(reactor, code=75) is None  # no backoff: straight back
    job = init.job(guid)
    assert (job.port, job.state, job.restarts, job.busy_ports) == (
        LOW + 1, "starting", 0, {LOW})
    assert reactor.spawned[-1].args[-2:] == ["--port", str(LOW + 1)]
    assert parse_config(init.config_text(guid))[guid]["listen_port"] == str(LOW + 1)
    init.http.healthy = True
    reactor.advance(1)
    assert job.state == "ready"


@pytest_twisted.ensureDeferred
async def test_exit_75_relaunches_are_bounded():
    """After ten busy ports, exit 75 is a failure like any other (here: no restarts left)."""
    reactor, init = make(max_restarts=0, healthy=False)
    guid = await init.launch(MOD)
    for n in range(10):
        crash(reactor, code=75)
        assert init.job(guid).port == LOW + n + 1
    crash(reactor, code=75)
    job = init.job(guid)
    assert job.state == "failed" and job.status.code == 75
    assert len(reactor.spawned) == 11


@pytest_twisted.ensureDeferred
async def test_restart_never():
    """restart = never: a failure ends failed, a clean exit ends exited; nothing restarts."""
    reactor, init = make(restart="never")
    bad = await init.launch(MOD)
    assert crash(reactor, code=3) is None
    good = await init.launch(MOD)
    assert crash(reactor, code=0) is None
    assert (init.job(bad).state, init.job(good).state) == ("failed", "exited")
    assert init.job(bad).last_error == "exit 3"
    assert len(reactor.spawned) == 2


@pytest_twisted.ensureDeferred
async def test_restart_always_restarts_a_clean_exit():
    """restart = always: even exit 0 restarts; on-failure leaves a clean exit down."""
    reactor, init = make(restart="always")
    guid = await init.launch(MOD)
    assert crash(reactor, code=0) == 0
    reactor.advance(0)
    assert init.job(guid).state == "ready" and len(reactor.spawned) == 2
    reactor, init = make(restart="on-failure")
    guid = await init.launch(MOD)
    assert crash(reactor, code=0) is None
    assert init.job(guid).state == "exited" and init.job(guid).last_error is None


@pytest_twisted.ensureDeferred
async def test_always_gives_up_on_a_job_that_keeps_exiting():
    """restart = always still has a flapping limit: failed, saying it gave up."""
    reactor, init = make(restart="always", max_restarts=1)
    guid = await init.launch(MOD)
    reactor.advance(crash(reactor, code=0))
    assert crash(reactor, code=0) is None
    job = init.job(guid)
    assert job.state == "failed"
    assert job.last_error == "gave up after 1 restarts within 1000s; last: exit 0"


@pytest_twisted.ensureDeferred
async def test_restart_keeps_guid_session_token_and_port():
    """A job in backoff keeps its port from newcomers, and restarts on it under its guid."""
    reactor, init = make()
    first = await init.launch(MOD, session="s-1")
    token = init.job(first).token
    delay = crash(reactor)
    second = await init.launch(MOD)
    assert init.job(second).port == LOW + 1
    reactor.advance(delay)
    job = init.job(first)
    assert (job.guid, job.session, job.token, job.port) == (first, "s-1", token, LOW)
    proc = reactor.spawned[-1]
    assert proc.args[-4:] == ["--guid", first, "--port", str(LOW)]
    section = parse_config(b"".join(proc.written).decode())[first]
    assert (section["listen_port"], section["session"], section["token"]) == (
        str(LOW), "s-1", token)


@pytest_twisted.ensureDeferred
async def test_restart_prefers_its_own_port_to_a_lower_free_one():
    """A lower port freed meanwhile does not tempt a restarting job off its own."""
    reactor, init = make()
    low = await init.launch(MOD)
    guid = await init.launch(MOD)
    assert init.job(guid).port == LOW + 1
    init.stop(low)
    reactor.spawned[0].exit(0)
    reactor.advance(crash(reactor))
    assert init.job(guid).port == LOW + 1 and init.job(guid).restarts == 1


@pytest_twisted.ensureDeferred
async def test_as_json_reports_state_exit_restarts_and_error():
    """as_json carries state, exit code and signal, restart count and last_error."""
    reactor, init = make()
    guid = await init.launch(MOD)
    crash(reactor, signal=9)
    view = init.job(guid).as_json()
    assert (view["state"], view["exit_code"], view["exit_signal"]) == ("backoff", None, 9)
    assert (view["restarts"], view["last_error"], view["pid"]) == (0, "signal 9", None)
    reactor.advance(1)
    view = init.job(guid).as_json()
    assert (view["state"], view["restarts"], view["exit_signal"]) == ("ready", 1, None)


@pytest_twisted.ensureDeferred
async def test_last_error_is_this_runs_stderr():
    """last_error quotes this run's last stderr lines, not stdout, not an earlier run's."""
    reactor, init = make()
    guid = await init.launch(MOD)
    proto = reactor.spawned[-1].protocol
    proto.childDataReceived(1, b"chatter on stdout\n")
    proto.childDataReceived(2, b"Traceback\nValueError: first reason\n")
    reactor.advance(0.1)  # the restart is at once: the next run starts later than these lines
    reactor.advance(crash(reactor))
    assert init.job(guid).last_error == "exit 1: Traceback | ValueError: first reason"
    reactor.advance(0.5)
    crash(reactor, signal=9)
    assert init.job(guid).last_error == "signal 9"
    assert len(init.job(guid).tail.lines()) == 3
