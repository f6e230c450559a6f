"""Launch bookkeeping on a fake process reactor: no process is started."""

import pytest
import pytest_twisted
from twisted.internet.defer import CancelledError
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.logger import capturedLogs, formatEvent

from turberfield_twisted import (
    BadGuid,
    Initiator,
    LocalLauncher,
    NoFreePort,
    SpawnFailed,
    UnknownModule,
)
from turberfield_twisted.configtext import parse_config
from turberfield_twisted.daemon.store import Store
from turberfield_twisted.errors import ConfigError, StoreFailed
from turberfield_twisted.launch.router import ModuleLaunchers
from turberfield_twisted.testing.configs import initiator_config
from turberfield_twisted.testing.fakes import FakeProcessReactor, initiator_on_clock

DEMO = "turberfield_twisted.demo.hello"


class _Http:
    """Health checks never answer: jobs stay ``starting``."""

    def get(self, *args, **kwargs):
        from twisted.internet.defer import Deferred

        return Deferred()


def make(low=23000, high=23009, extra_module="", **own):
    reactor = FakeProcessReactor()
    launcher = LocalLauncher(reactor, python="/py", setsid=None, process_groups=False)
    cfg = initiator_config(low, high, **own)
    for line in extra_module.splitlines():
        key, value = line.split(" = ")
        cfg.set(DEMO, key, value)
    init = Initiator(None, guid="init", cfg=cfg, reactor=reactor, launcher=launcher, http=_Http())
    return reactor, init


@pytest_twisted.ensureDeferred
async def test_launch_records_the_worker_and_spawns_the_module():
    """launch returns a guid; the Worker is recorded; argv is python -P -m MODULE --guid --port."""
    reactor, init = make()
    guid = await init.launch(DEMO, session="s-1")
    job = init.workers[guid]
    assert isinstance(job, Initiator.Worker)
    assert (job.guid, job.port, job.session, job.module) == (guid, 23000, "s-1", DEMO)
    [proc] = reactor.spawned
    assert job.process.transport is proc and job.pid == proc.pid
    assert proc.args == ["/py", "-P", "-m", DEMO, "--guid", guid, "--port", "23000"]
    assert job.state == "starting"


@pytest_twisted.ensureDeferred
async def test_config_goes_to_stdin_and_stdin_is_closed():
    """The job's section (module keys, port, parent, token, session) is written, then EOF."""
    reactor, init = make()
    guid = await init.launch(DEMO, session="s-1")
    [proc] = reactor.spawned
    assert proc.stdin_closed
    seen = parse_config(b"".join(proc.written).decode())
    assert seen.sections() == [guid]
    section = seen[guid]
    assert section["greeting"] == "hello"
    assert section["listen_port"] == "23000"
    assert section["session"] == "s-1"
    assert section["parent_addr"] == "127.0.0.1"
    assert section["token"] == init.workers[guid].token
    assert "init" not in seen


@pytest_twisted.ensureDeferred
async def test_token_is_in_no_argv_or_environment():
    """The job token travels on stdin only."""
    reactor, init = make()
    guid = await init.launch(DEMO)
    token = init.workers[guid].token
    [proc] = reactor.spawned
    assert token not in " ".join(proc.args)
    assert token not in " ".join(f"{k}={v}" for k, v in proc.env.items())
    assert set(proc.env) <= {"PATH", "LANG", "PYTHONUNBUFFERED", "PYTHONPATH"}
    assert token not in repr(init.workers[guid])


@pytest_twisted.ensureDeferred
async def test_ports_are_distinct_per_job():
    """Each job gets the next free port of the range."""
    _, init = make()
    guids = [await init.launch(DEMO) for _ in range(3)]
    assert [init.workers[g].port for g in guids] == [23000, 23001, 23002]


@pytest.mark.parametrize("module", ["no.such.module", "os; rm", "init", "json"])
@pytest_twisted.ensureDeferred
async def test_unknown_or_unlisted_module_leaves_nothing(module):
    """No section, a bad name or a module that isn't there: UnknownModule, no trace."""
    reactor, init = make()
    sections = init.cfg.sections()
    with pytest.raises(UnknownModule):
        await init.launch(module)
    assert reactor.spawned == []
    assert init.workers == {}
    assert init.cfg.sections() == sections


@pytest_twisted.ensureDeferred
async def test_module_with_a_section_that_does_not_exist():
    """A section alone is not enough: the module must be found."""
    reactor = FakeProcessReactor()
    cfg = initiator_config(extra="[no_such_pkg.worker]\nkey = 1\n")
    init = Initiator(None, guid="init", cfg=cfg, reactor=reactor, http=_Http(),
                     launcher=LocalLauncher(reactor, setsid=None, process_groups=False))
    with pytest.raises(UnknownModule, match=r"no_such_pkg\.worker"):
        await init.launch("no_such_pkg.worker")
    assert init.workers == {} and not cfg.has_section("no_such_pkg.worker-job")


@pytest_twisted.ensureDeferred
async def test_failed_spawn_leaves_a_failed_job_and_nothing_else():
    """
    An OS error from spawnProcess is SpawnFailed, logged under the guid; the job is
    failed, saying why, and holds no port, section or timer.
    """
    reactor, init = make()
    reactor.fail_spawn = OSError(2, "No such file or directory")
    sections = init.cfg.sections()
    with capturedLogs() as events, pytest.raises(SpawnFailed, match="No such file"):
        await init.launch(DEMO, guid="job-x")
    assert any(e.get("guid") == "job-x" and "could not be spawned: could not start"
               in formatEvent(e) for e in events)
    job = init.job("job-x")
    assert job.state == "failed" and "No such file" in job.last_error
    assert reactor.getDelayedCalls() == [] and init.cfg.sections() == sections
    reactor.fail_spawn = None
    again = await init.launch(DEMO)
    assert init.job(again).port == job.port == 23000  # the failed job let its port go


@pytest_twisted.ensureDeferred
async def test_exhausted_range_on_launch():
    """With every port taken by running jobs, launch raises NoFreePort."""
    _, init = make(low=23000, high=23001)
    await init.launch(DEMO)
    await init.launch(DEMO)
    with pytest.raises(NoFreePort):
        await init.launch(DEMO)
    assert len(init.workers) == 2


@pytest_twisted.ensureDeferred
async def test_given_guid_is_used_and_checked():
    """A supplied guid is kept; a malformed or taken one is refused."""
    _, init = make()
    assert await init.launch(DEMO, guid="job-1") == "job-1"
    with pytest.raises(BadGuid):
        await init.launch(DEMO, guid="job-1")
    with pytest.raises(BadGuid):
        await init.launch(DEMO, guid="../etc")
    with pytest.raises(BadGuid):
        await init.launch(DEMO, guid="x" * 10000)


@pytest_twisted.ensureDeferred
async def test_stop_sends_term_then_kill_after_timeout():
    """stop: TERM at once, KILL after stop_timeout, fires with the exit status."""
    reactor, init = make(stop_timeout="5")
    guid = await init.launch(DEMO)
    [proc] = reactor.spawned
    done = init.stop(guid)
    assert proc.signals == ["TERM"]
    assert init.workers[guid].state == "stopping"
    reactor.advance(4.9)
    assert proc.signals == ["TERM"]
    reactor.advance(0.2)
    assert proc.signals == ["TERM", "KILL"]
    proc.exit(signal=9)
    status = await done
    assert (status.code, status.signal) == (None, 9)
    assert init.workers[guid].state == "exited"
    assert not init.cfg.has_section(guid)


@pytest_twisted.ensureDeferred
async def test_second_stop_is_harmless():
    """A stop while stopping sends nothing more and fires with the same status."""
    reactor, init = make()
    guid = await init.launch(DEMO)
    [proc] = reactor.spawned
    first, second = init.stop(guid), init.stop(guid)
    assert proc.signals == ["TERM"]
    proc.exit(0)
    assert (await first) == (await second)
    assert reactor.getDelayedCalls() == []


@pytest.mark.parametrize(
    ("config", "error"),
    [
        ({"token": "mine"}, "OverrideNotAllowed"),
        ({"listen_port": "80"}, "OverrideNotAllowed"),
        ({"parent_addr": "10.0.0.1"}, "OverrideNotAllowed"),
        ({"unlisted": "x"}, "OverrideNotAllowed"),
        ({"greeting": ["a"]}, "BadOverride"),
        ({"greeting": "two\nlines"}, "BadOverride"),
        (["greeting"], "BadOverride"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_overrides_are_checked_against_the_allow_list(config, error):
    """Only keys listed in ``overridable`` may be set, never token, ports or addresses."""
    reactor, init = make()
    with pytest.raises(Exception) as caught:
        await init.launch(DEMO, config=config)
    assert type(caught.value).__name__ == error
    assert reactor.spawned == [] and init.workers == {}


@pytest_twisted.ensureDeferred
async def test_allowed_override_reaches_the_section():
    """An allowed override replaces the module's default in the job's section."""
    reactor, init = make()
    guid = await init.launch(DEMO, config={"greeting": "bonjour"})
    [proc] = reactor.spawned
    assert parse_config(b"".join(proc.written).decode())[guid]["greeting"] == "bonjour"


@pytest_twisted.ensureDeferred
async def test_wait_for_state_fires_on_the_state_or_times_out():
    """wait_for_state fires with the job on entering a wanted state, else TimeoutError."""
    reactor, init = make()
    standing = len(init._observers)  # the daemon's own (its upkeep of ready jobs)
    guid = await init.launch(DEMO)
    assert (await init.wait_for_state(guid, ["starting"], 1)).guid == guid
    waiting = init.wait_for_state(guid, ["exited", "failed"], 10)
    too_slow = init.wait_for_state(guid, ["ready"], 1)
    reactor.advance(1.5)
    with pytest.raises(DeferredTimeout):
        await too_slow
    init.stop(guid)
    reactor.spawned[0].exit(0)
    assert (await waiting).state == "exited"
    assert len(init._observers) == standing


class _Counting(frozenset):
    """States whose every membership test is counted in ``looks``."""

    looks = 0

    def __contains__(self, item):
        _Counting.looks += 1
        return frozenset.__contains__(self, item)


@pytest_twisted.ensureDeferred
async def test_an_event_is_looked_at_only_by_the_waits_on_its_own_job():
    """
    A hundred waits on a hundred jobs add nothing to what every event goes
    through (the observers stay as many): one job's event is held against its
    own job's waits alone (one look).
    """
    reactor, init = make(23000, 23199)
    guids = [await init.launch(DEMO) for _ in range(100)]  # two starting, the rest waiting
    observers = len(init._observers._observers)
    waits = [init._observers.entered(guid, _Counting({"ready"})) for guid in guids]
    assert len(init._observers._observers) == observers
    _Counting.looks = 0
    init.stop(guids[50])  # a waiting job ends at once: one event
    assert _Counting.looks == 1 and init.job(guids[50]).state == "exited"
    for wait in waits:
        wait.addErrback(lambda failure: failure.trap(CancelledError))
        wait.cancel()
    assert len(init._observers) == observers  # no wait left; the standing observers stay
    for guid in guids:
        init.stop(guid)
    for proc in reactor.spawned:
        if proc.pid is not None:
            proc.exit(0)


def test_a_module_found_is_looked_for_once_until_a_reload(monkeypatch):
    """A hundred launches of one module look for it once; a reload looks again."""
    import turberfield_twisted.launch.local as launcher_module

    looked: list[str] = []
    findable = launcher_module._findable

    def counted(module, path):
        looked.append(module)
        return findable(module, path)

    monkeypatch.setattr(launcher_module, "_findable", counted)
    launcher = LocalLauncher(FakeProcessReactor(), python="/py")
    launcher.prepare()
    for _ in range(100):
        launcher.check(DEMO)
    assert looked == [DEMO]
    with pytest.raises(UnknownModule):
        launcher.check("no.such.module")
    with pytest.raises(UnknownModule):
        launcher.check("no.such.module")  # not found is not remembered
    launcher.reload()
    launcher.check(DEMO)
    assert looked == [DEMO, "no.such.module", "no.such.module", DEMO]


@pytest.mark.parametrize("session", ["a$b", "${turberfield_twisted.demo.hello:secret}", "5$$"])
@pytest_twisted.ensureDeferred
async def test_session_and_values_are_never_interpolated(session):
    """A session (or value) with `$` reaches the job literally: no other section leaks in."""
    reactor, init = make(extra_module="cost = 5$$\n")
    guid = await init.launch(DEMO, session=session)
    [proc] = reactor.spawned
    section = parse_config(b"".join(proc.written).decode())[guid]
    assert section["session"] == session
    assert section["cost"] == "5$"


@pytest_twisted.ensureDeferred
async def test_worker_url_uses_the_modules_address_bracketing_ipv6():
    """Health checks, config pushes and the relay reach a worker at one URL."""
    _, init = make()
    guid = await init.launch(DEMO)
    job = init.workers[guid]
    assert init.worker_url(job, "/health") == f"http://127.0.0.1:{job.port}/health"
    _, init = make(extra_module="listen_addr = ::1")
    job = init.workers[await init.launch(DEMO)]
    assert init.worker_url(job) == f"http://[::1]:{job.port}"


@pytest_twisted.ensureDeferred
async def test_the_workers_path_is_asked_at_start_not_at_the_first_check(monkeypatch):
    """
    The default launcher asks the interpreter for the workers' path when
    the service starts (prepare), once; a check then (in a launch, in the
    reactor's thread) does not ask again. A launcher never prepared asks
    at its first check.
    """
    import sys

    import turberfield_twisted.launch.local as launcher_module

    asked: list[str] = []

    def worker_path(python, env):
        asked.append(python)
        return [p for p in sys.path if p]

    monkeypatch.setattr(launcher_module, "_worker_path", worker_path)
    init = Initiator(None, guid="init", cfg=initiator_config(23000, 23009),
                     reactor=FakeProcessReactor(), http=_Http())
    init.startService()
    assert asked == [sys.executable]
    init.runnable(DEMO)
    assert asked == [sys.executable]
    await init.stopService()
    unprepared = LocalLauncher(FakeProcessReactor(), python="/py")
    unprepared.check(DEMO)
    unprepared.check(DEMO)
    assert asked == [sys.executable, "/py"]


@pytest_twisted.ensureDeferred
async def test_only_the_newest_max_exited_ended_jobs_are_kept(state):
    """
    With ``max_exited = 2``, each launch forgets all but the two newest
    ended jobs, from the job table and from the store alike.
    """
    store = Store.open(state)
    try:
        reactor = FakeProcessReactor()
        launcher = LocalLauncher(reactor, python="/py", setsid=None, process_groups=False)
        init = Initiator(None, guid="init", cfg=initiator_config(23000, 23009, max_exited="2"),
                         reactor=reactor, launcher=launcher, http=_Http(), store=store)
        ended = []
        for _ in range(4):
            guid = await init.launch(DEMO)
            done = init.stop(guid)
            reactor.spawned[-1].exit(0)
            assert (await done).code == 0
            ended.append(guid)
        assert list(init.workers) == ended[1:]  # the 4th launch forgot the 1st
        fifth = await init.launch(DEMO)
        assert list(init.workers) == [*ended[2:], fifth]
        assert [record.guid for record in store.jobs()] == [*ended[2:], fifth]
    finally:
        store.close()


@pytest_twisted.ensureDeferred
async def test_an_ended_job_the_store_cannot_forget_stays_in_the_table_too(state, monkeypatch):
    """
    Past ``max_exited``, an ended job leaves the table only once the store has
    forgotten it: if it can't, the job stays in both (logged), and the launch goes on.
    """
    store = Store.open(state)
    try:
        reactor = FakeProcessReactor()
        launcher = LocalLauncher(reactor, python="/py", setsid=None, process_groups=False)
        init = Initiator(None, guid="init", cfg=initiator_config(23000, 23009, max_exited="0"),
                         reactor=reactor, launcher=launcher, http=_Http(), store=store)
        ended = await init.launch(DEMO)
        done = init.stop(ended)
        reactor.spawned[-1].exit(0)
        await done

        def refuse(guid: str) -> None:
            raise StoreFailed("the store could not forget a job: disk I/O error")

        monkeypatch.setattr(store, "forget_job", refuse)
        with capturedLogs() as events:
            fresh = await init.launch(DEMO)
        assert list(init.workers) == [ended, fresh]
        assert [record.guid for record in store.jobs()] == [ended, fresh]
        assert any("ended jobs stay past max_exited" in formatEvent(e) for e in events)
    finally:
        store.close()


@pytest_twisted.ensureDeferred
async def test_the_initiator_prepares_reloads_and_closes_its_launcher_as_declared():
    """ILauncher's prepare, reload and close are called: at start, on a reload, at stop."""
    world = initiator_on_clock({"init": {"child_port_min": 9000, "child_port_max": 9009},
                                "my.worker": {}})
    world.init.startService()
    world.init.reconfigure(world.init.cfg, world.init.settings)
    await world.init.stopService()
    assert world.launcher.calls == [("prepare", ["my.worker"]), ("reload", ["my.worker"]),
                                    ("close", [])]


def test_an_initiator_is_built_whole_before_it_has_a_config():
    """
    Initiator(options) with no config makes its launcher at once, which makes no
    launcher of its own and reads no config until one is used; the config is checked
    when the service starts.
    """
    import argparse

    reactor = FakeProcessReactor()
    init = Initiator(argparse.Namespace(guid="seed"), reactor=reactor)
    assert isinstance(init.launcher, ModuleLaunchers)
    assert reactor.spawned == [] and reactor.getDelayedCalls() == []
    with pytest.raises(ConfigError, match=r"no \[seed\] section"):
        init.startService()
    assert not init.running


@pytest_twisted.ensureDeferred
async def test_the_ended_jobs_kept_are_those_that_ended_last():
    """
    With ``max_exited = 2``, a launch forgets the ended jobs that ended first, whenever
    they were launched: a job launched long ago that has just failed is kept.
    """
    world = initiator_on_clock({"init": {"child_port_min": 9000, "child_port_max": 9009,
                                         "max_exited": 2},
                                "my.worker": {"restart": "never"}})
    init, clock = world.init, world.clock
    first, second, third = [await init.launch("my.worker") for _ in range(3)]
    for guid in (third, second, first):  # the first launched ends last
        clock.advance(1)
        world.launcher.latest(guid).exit(1)
    assert [init.job(g).state.value for g in (first, second, third)] == ["failed"] * 3
    fourth = await init.launch("my.worker")
    assert list(init.workers) == [first, second, fourth]
