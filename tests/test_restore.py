"""
What the daemon keeps and puts back, on a Clock with a fake launcher and a
real store: operator intent kept before each call returns, jobs restored
at start, declared jobs, reload and when the daemon may say it is ready.
"""

from __future__ import annotations

import textwrap
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent

from turberfield_twisted import Initiator
from turberfield_twisted.configtext import parse_config
from turberfield_twisted.daemon.reconcile import Reconciler
from turberfield_twisted.daemon.statedir import StateDir
from turberfield_twisted.daemon.store import Store
from turberfield_twisted.daemon.store_records import JobRecord
from turberfield_twisted.errors import ConfigError, StoreFailed
from turberfield_twisted.jobs.job import EventKind, JobState, Wanted
from turberfield_twisted.testing.fakes import FakeHealth, FakeLauncher

MOD = "some.worker"
OTHER = "other.worker"
LOW = 24100

BASE = f"""
[init]
child_port_min = {LOW}
child_port_max = {LOW + 49}
ready_timeout = 10
max_starting = 4

[{MOD}]
overridable = greeting
backoff_initial = 1
jitter = 0

[{OTHER}]
"""


class World:
    """An Initiator with a store in ``path`` and a Reconciler that reloads ``self.text``."""

    def __init__(self, path: Any, text: str = BASE):
        self.text = text
        self.state = StateDir.open(path)
        self.state.lock()
        self.store = Store.open(self.state)
        self.clock, self.launcher = Clock(), FakeLauncher()
        self.http = FakeHealth(self.launcher)  # answers in the name of the worker on the port
        self.init = Initiator(None, guid="init", cfg=parse_config(text, source="my.cfg"),
                              reactor=self.clock, launcher=self.launcher, http=self.http,
                              store=self.store)
        self.reconciler = Reconciler(self.init, lambda: parse_config(self.text, "my.cfg"))
        self.events: list[Any] = []
        self.init.subscribe(self.events.append)

    def start(self) -> None:
        self.init.startService()
        self.reconciler.startService()

    def crash(self) -> None:
        """The daemon dies: nothing more is written; its lock goes with it."""
        self.init._watch.stop()
        self.store.close()
        self.state.close()

    def kept(self) -> dict[str, JobRecord]:
        return {job.guid: job for job in self.store.jobs()}

    def states(self) -> dict[str, str]:
        return {guid: job.state.value for guid, job in self.init.workers.items()}


@pytest.fixture
def world(tmp_path):
    w = World(tmp_path / "state")
    yield w
    w.store.close()
    w.state.close()


def again(tmp_path, text: str = BASE) -> World:
    return World(tmp_path / "state", text)


# -- intent is kept before the call returns ------------------------------------------


@pytest_twisted.ensureDeferred
async def test_launch_stop_restart_and_config_are_kept_before_they_return(world):
    """Each operator call has written its record when it returns."""
    world.start()
    guid = await world.init.launch(MOD, session="s1", config={"greeting": "hi"})
    port = world.init.job(guid).port
    assert world.kept()[guid] == JobRecord(guid, MOD, "s1", {"greeting": "hi"}, "running",
                                           False, port)
    world.init.stop(guid)
    assert world.kept()[guid].wanted == "stopped"
    world.launcher.latest(guid).exit(0)
    await world.init.update_config(guid, {"greeting": "ho"})
    assert world.kept()[guid].overrides == {"greeting": "ho"}
    world.init.restart(guid)
    assert world.kept()[guid].wanted == "running"


@pytest_twisted.ensureDeferred
async def test_a_launch_that_cannot_be_kept_leaves_nothing(world):
    """If the store can't keep it, the launch raises StoreFailed before anything is done:
    no job, no process, no event, no port held."""
    world.start()
    world.store.close()
    with pytest.raises(StoreFailed):
        await world.init.launch(MOD)
    assert (world.init.workers, world.launcher.spawned, world.events) == ({}, [], [])
    assert world.init._lifecycle.ports.held == {}


@pytest_twisted.ensureDeferred
async def test_a_restart_or_config_change_that_cannot_be_kept_changes_nothing(world):
    """StoreFailed before anything changes: a stopped job stays stopped (no event, no
    process), a running one keeps its process and its config, its worker is not asked."""
    world.start()
    stopped = await world.init.launch(MOD)
    world.init.stop(stopped)
    world.launcher.latest(stopped).exit(0)
    running = await world.init.launch(MOD, config={"greeting": "hi"})
    spawned, events = list(world.launcher.spawned), list(world.events)
    world.store.close()
    for guid in (stopped, running):
        with pytest.raises(StoreFailed):
            world.init.restart(guid)
    with pytest.raises(StoreFailed):  # not sent: this fake client could not send it
        await world.init.update_config(running, {"greeting": "ho"})
    assert (world.launcher.spawned, world.events) == (spawned, events)
    assert world.states() == {stopped: "exited", running: "ready"}
    assert world.init.job(stopped).wanted is Wanted.STOPPED
    assert world.init.job(running).overrides == {"greeting": "hi"}


@pytest_twisted.ensureDeferred
async def test_a_stop_that_cannot_be_kept_leaves_the_job_running(world):
    """StoreFailed before anything changes: the job runs on, wanted running."""
    world.start()
    guid = await world.init.launch(MOD)
    world.store.close()
    with pytest.raises(StoreFailed):
        world.init.stop(guid)
    job = world.init.job(guid)
    assert (job.state, job.wanted) == (JobState.READY, Wanted.RUNNING)


@pytest_twisted.ensureDeferred
async def test_stopping_the_daemon_is_not_an_operator_stop(world):
    """stopService ends every job but keeps what the operator wanted."""
    world.start()
    guid = await world.init.launch(MOD)
    world.init.stopService()
    assert world.init.job(guid).state is JobState.EXITED
    assert world.kept()[guid].wanted == "running"


# -- restore -----------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_restarted_daemon_puts_every_job_back_as_its_operator_left_it(world, tmp_path):
    """Running jobs start again (same guid, session, overrides, port; new token); a stopped
    one is shown exited, with no event; a failed one wanted running starts again."""
    world.start()
    running = await world.init.launch(MOD, session="s1", config={"greeting": "hi"})
    stopped = await world.init.launch(MOD, session="s2")
    world.init.stop(stopped)
    world.launcher.latest(stopped).exit(0)
    old = world.init.job(running)
    world.crash()

    w = again(tmp_path)
    w.start()
    assert w.states() == {running: "ready", stopped: "exited"}
    job = w.init.job(running)
    assert (job.session, job.overrides, job.port) == ("s1", {"greeting": "hi"}, old.port)
    assert job.token != old.token and b"greeting = hi" in w.launcher.latest(running).config
    assert [e.name for e in w.events if e.guid == stopped] == []
    assert w.init.job(stopped).wanted is Wanted.STOPPED
    w.crash()


@pytest_twisted.ensureDeferred
async def test_a_kept_job_that_can_no_longer_run_is_shown_failed_saying_why(world, tmp_path):
    """Its module lost its section, or its override is no longer allowed: failed, logged."""
    world.start()
    gone = await world.init.launch(OTHER)
    forbidden = await world.init.launch(MOD, config={"greeting": "hi"})
    world.crash()
    text = BASE.replace(f"[{OTHER}]\n", "").replace("overridable = greeting", "")
    w = again(tmp_path, text)
    with capturedLogs() as logged:
        w.start()
    assert w.states() == {gone: "failed", forbidden: "failed"}
    assert "could not be started" in w.init.job(gone).last_error
    assert "does not allow 'greeting'" in w.init.job(forbidden).last_error
    assert any(e.get("guid") == gone and "could not be started" in formatEvent(e)
               for e in logged)
    assert set(w.kept()) == {gone, forbidden}  # kept: a fixed config brings them back
    w.crash()


# -- declared jobs -------------------------------------------------------------------

DECLARED = BASE + textwrap.dedent(f"""
    [job:cache]
    module = {MOD}
    session = s1
    greeting = hi

    [job:web]
    module = {MOD}
    requires = cache
    """)


@pytest.fixture
def declared(tmp_path):
    w = World(tmp_path / "state", DECLARED)
    yield w
    w.store.close()
    w.state.close()


def spawn_order(w: World) -> list[str]:
    return [worker.guid for worker in w.launcher.spawned]


def test_declared_jobs_start_with_the_daemon_in_order(declared):
    """web requires cache: cache is spawned first, web once cache is ready."""
    declared.http.up = set()
    declared.start()
    assert spawn_order(declared) == ["cache"]
    assert declared.states() == {"cache": "starting", "web": "waiting"}
    declared.http.up = None
    declared.clock.advance(0.1)
    assert spawn_order(declared) == ["cache", "web"]
    cache = declared.init.job("cache")
    assert (cache.declared, cache.session, cache.overrides) == (True, "s1", {"greeting": "hi"})
    assert declared.kept()["web"].declared


def test_a_declared_job_its_operator_stopped_stays_stopped_across_a_restart(declared,
                                                                           tmp_path):
    """Stopped through the API, a declared job is not started by the next daemon."""
    declared.start()
    declared.init.stop("web")
    declared.crash()
    w = again(tmp_path, DECLARED)
    w.start()
    assert w.states() == {"cache": "ready", "web": "exited"}
    w.init.restart("web")
    assert w.states()["web"] == "ready" and w.kept()["web"].wanted == "running"
    w.crash()


def test_a_declaration_removed_while_the_daemon_was_down_is_forgotten(declared, tmp_path):
    """Kept as declared but no longer in the config: neither started nor kept."""
    declared.start()
    declared.crash()
    w = again(tmp_path, BASE + f"[job:cache]\nmodule = {MOD}\n")
    w.start()
    assert w.states() == {"cache": "ready"} and set(w.kept()) == {"cache"}
    w.crash()


# -- reload ----------------------------------------------------------------------


def test_reload_starts_new_stops_removed_restarts_changed_and_keeps_unchanged(declared):
    """The answer says what happened; an unchanged job keeps its process."""
    declared.start()
    web_worker = declared.launcher.latest("web")
    declared.text = DECLARED.replace("greeting = hi", "greeting = ho") + textwrap.dedent(f"""
        [job:extra]
        module = {OTHER}
        """)
    done = declared.reconciler.reload()
    assert done.as_json() == {"started": ["extra"], "stopped": [], "restarted": ["cache"],
                              "unchanged": ["web"], "restart_needed": [], "warnings": []}
    assert declared.launcher.latest("web") is web_worker
    assert b"greeting = ho" in declared.launcher.latest("cache").config
    assert declared.states() == {"cache": "ready", "web": "ready", "extra": "ready"}
    declared.text = DECLARED
    done = declared.reconciler.reload()
    assert (done.stopped, done.restarted) == (("extra",), ("cache",))
    assert declared.states()["extra"] == "exited" and "extra" not in declared.kept()
    assert declared.init.job("extra").declared is False


def test_a_changed_module_section_applies_from_each_jobs_next_start(declared):
    """Reload with a module's keys changed: its jobs keep running; their next start takes
    the new keys and policy."""
    declared.start()
    worker = declared.launcher.latest("web")
    declared.text = DECLARED.replace("backoff_initial = 1", "backoff_initial = 7\ncolour = red")
    assert declared.reconciler.reload().unchanged == ("cache", "web")
    assert declared.launcher.latest("web") is worker
    assert declared.init.job("web").tracker.policy.backoff_initial == 7
    worker.exit(1)
    declared.clock.advance(7)
    assert b"colour = red" in declared.launcher.latest("web").config


def test_a_bad_file_changes_nothing(declared):
    """A reload of a bad file raises ConfigError (file, line, key) and the old config runs on."""
    declared.start()
    before = (declared.init.cfg, declared.init.settings, declared.states())
    declared.text = DECLARED + "[job:bad]\nmodule = nothing.here-s3cr3t\n"
    with pytest.raises(ConfigError) as caught:
        declared.reconciler.reload()
    assert "my.cfg, line" in str(caught.value) and "'module' in [job:bad]" in str(caught.value)
    assert "s3cr3t" not in str(caught.value)
    assert (declared.init.cfg, declared.init.settings, declared.states()) == before


@pytest_twisted.ensureDeferred
async def test_reload_keeps_the_config_of_running_jobs_and_refuses_to_shadow_them(declared):
    """Running jobs' configs survive a reload (none is a section of the operator's config);
    a file section naming a running job is refused."""
    declared.start()
    guid = await declared.init.launch(MOD, guid="mine")
    declared.reconciler.reload()
    for name in ("mine", "cache"):
        assert not declared.init.cfg.has_section(name)
        own = parse_config(declared.init.config_text(name))[name]
        assert own["listen_port"] == str(declared.init.job(name).port)
    assert "mine" not in declared.init.settings.modules
    declared.text = DECLARED + f"[{guid}]\nx = 1\n"
    with pytest.raises(ConfigError, match=r"section \[mine\] names a job that runs"):
        declared.reconciler.reload()
    declared.text = DECLARED + f"[job:{guid}]\nmodule = {MOD}\n"
    with pytest.raises(ConfigError, match=r"names a job launched through the API, which runs"):
        declared.reconciler.reload()


def test_reload_names_the_keys_that_need_a_restart(declared):
    """listen_port or the admin token changed: applied only by a restart, and said so."""
    declared.start()
    declared.text = DECLARED.replace("[init]\n", "[init]\nlisten_port = 9999\n"
                                     "admin_token = s3cr3t\nready_timeout = 3\n", 1).replace(
        "ready_timeout = 10\n", "")
    done = declared.reconciler.reload()
    assert done.restart_needed == ("listen_port", "admin_token")
    assert declared.init.settings.initiator.ready_timeout == 3  # applied at once


def test_restart_needed_compares_with_what_the_daemon_runs_on(declared):
    """
    A changed listen_port is named at every reload while it differs from the one the
    daemon started with (not the last reload's); put back, it is not named.
    """
    declared.start()
    declared.text = DECLARED.replace("[init]\n", "[init]\nlisten_port = 8081\n", 1)
    assert declared.reconciler.reload().restart_needed == ("listen_port",)
    assert declared.reconciler.reload().restart_needed == ("listen_port",)  # still on 8080
    declared.text = DECLARED
    assert declared.reconciler.reload().restart_needed == ()


def test_a_key_like_one_of_the_daemons_is_warned_of_at_reload(declared):
    """A typo of a daemon key in a module's section: the reload warns (file, line), and runs."""
    declared.start()
    declared.text = DECLARED.replace(f"[{MOD}]\n", f"[{MOD}]\nrestrat = never\n", 1)
    with capturedLogs() as events:
        done = declared.reconciler.reload()
    line = DECLARED.splitlines().index(f"[{MOD}]") + 2
    [warning] = done.warnings
    assert warning.startswith(f"my.cfg, line {line}: key 'restrat' in [{MOD}] is not one the"
                              " daemon reads (did you mean 'restart'?)")
    assert [formatEvent(e) for e in events if e["log_level"].name == "warn"] == [
        f"config reloaded: {warning}"]
    assert done.unchanged == ("cache", "web")


def test_a_declared_job_stopped_by_its_operator_stays_stopped_when_its_section_changes(declared):
    """A changed section updates a stopped job's record, and does not start it."""
    declared.start()
    declared.init.stop("cache")
    declared.text = DECLARED.replace("session = s1", "session = s9")
    assert declared.reconciler.reload().restarted == ("cache",)
    job = declared.init.job("cache")
    assert (job.state, job.session, declared.kept()["cache"].session) == (
        JobState.EXITED, "s9", "s9")


# -- ready to notify -----------------------------------------------------------------


def test_settled_waits_for_declared_jobs_and_not_for_ones_that_cannot_start(declared):
    """READY=1 waits for cache and web; a job waiting for a failed one does not hold it."""
    declared.http.up = set()
    declared.start()
    fired = []
    declared.reconciler.settled().addCallback(fired.append)
    assert fired == []
    declared.launcher.latest("cache").exit(1)  # crashes: backoff counts as got as far as it will
    assert fired == [None]


def test_settled_fires_once_every_declared_job_is_ready(declared):
    """With healthy workers the declared jobs get ready and it fires."""
    declared.http.up = set()
    declared.start()
    fired = []
    declared.reconciler.settled().addCallback(fired.append)
    declared.http.up = None
    declared.clock.advance(0.1)
    assert declared.states() == {"cache": "ready", "web": "ready"}
    assert fired == [None]
    assert [e.name for e in declared.events if e.kind is EventKind.STATE and
            e.guid == "web"] == ["waiting", "starting", "ready"]
