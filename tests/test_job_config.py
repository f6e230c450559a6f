"""
A job's config is composed when it is sent, from its module section, its overrides and
what the initiator sets for it; the operator's config is never written to.
"""

from __future__ import annotations

import configparser

import pytest_twisted
from test_worker_messaging import FakeWorker
from treq.testing import StubTreq

from turberfield_twisted import Initiator, LocalLauncher
from turberfield_twisted.configtext import parse_config
from turberfield_twisted.testing.configs import initiator_config
from turberfield_twisted.testing.fakes import FakeProcessReactor

DEMO = "turberfield_twisted.demo.hello"


def _as_written(cfg: configparser.ConfigParser) -> dict[str, dict[str, str]]:
    """Every section of ``cfg`` and its own keys, raw: what the operator wrote."""
    return {name: dict(cfg.items(name, raw=True)) for name in [cfg.default_section,
                                                                *cfg.sections()]}


def _world() -> tuple[FakeProcessReactor, Initiator, FakeWorker]:
    reactor, worker = FakeProcessReactor(), FakeWorker()
    cfg = initiator_config(23000, 23009)
    cfg.set("DEFAULT", "region", "eu")
    init = Initiator(None, guid="init", cfg=cfg, reactor=reactor,
                     launcher=LocalLauncher(reactor, python="/py", setsid=None,
                                            process_groups=False),
                     http=StubTreq(worker.app.resource()))
    return reactor, init, worker


@pytest_twisted.ensureDeferred
async def test_launching_changing_and_ending_a_job_leaves_the_operators_config_as_it_was():
    """No section is written for a job: not at its start, a live change, a restart or its end."""
    reactor, init, worker = _world()
    before = _as_written(init.cfg)
    guid = await init.launch(DEMO, config={"greeting": "bonjour"}, session="s-1")
    assert _as_written(init.cfg) == before
    await init.update_config(guid, {"greeting": "hej"})
    assert _as_written(init.cfg) == before
    init.restart(guid)
    reactor.spawned[-1].exit(0)
    assert _as_written(init.cfg) == before
    done = init.stop(guid)
    reactor.spawned[-1].exit(0)
    await done
    assert _as_written(init.cfg) == before and not init.cfg.has_section(guid)
    assert len(worker.pushes) == 1


@pytest_twisted.ensureDeferred
async def test_what_a_worker_reads_is_default_less_secrets_and_its_section_escaped():
    """stdin and a live change get the same kind of text: [DEFAULT] less secrets, [guid]."""
    reactor, init, worker = _world()
    init.cfg.set("DEFAULT", "admin_token", "not-for-jobs")
    guid = await init.launch(DEMO, config={"greeting": "5$"}, session="s-1")
    job = init.job(guid)
    stdin = b"".join(reactor.spawned[-1].written).decode()
    assert stdin == init.config_text(guid)
    assert "greeting = 5$$" in stdin and "not-for-jobs" not in stdin
    seen = parse_config(stdin)
    assert seen.sections() == [guid] and seen.defaults()["region"] == "eu"
    assert dict(seen.items(guid)).items() >= {
        "greeting": "5$", "module": DEMO, "listen_port": str(job.port), "session": "s-1",
        "parent_addr": "127.0.0.1", "token": job.token}.items()
    await init.update_config(guid, {"greeting": "hej"})
    [(_, pushed)] = worker.pushes
    assert parse_config(pushed.decode())[guid]["greeting"] == "hej"
    assert pushed.decode() == init.config_text(guid)


@pytest_twisted.ensureDeferred
async def test_a_live_change_keeps_the_module_keys_the_job_started_with():
    """A reload changes a module's keys from each job's next start, a live change included."""
    reactor, init, worker = _world()
    guid = await init.launch(DEMO)
    cfg = initiator_config(23000, 23009)
    cfg.set(DEMO, "motd", "new")
    init.reconfigure(cfg, init.settings)
    await init.update_config(guid, {"greeting": "hej"})
    [(_, pushed)] = worker.pushes
    assert "motd" not in parse_config(pushed.decode())[guid]
    init.restart(guid)
    reactor.spawned[-1].exit(0)  # stopped, then started again
    stdin = b"".join(reactor.spawned[-1].written).decode()
    assert parse_config(stdin)[guid]["motd"] == "new"


@pytest_twisted.ensureDeferred
async def test_a_job_is_shown_its_config_while_it_has_a_run_and_nothing_once_ended():
    """config_view (GET /config/{guid}): DEFAULT and its section less secrets; {} once ended."""
    reactor, init, _ = _world()
    guid = await init.launch(DEMO)
    view = init.config_view(guid)
    assert view["default"]["region"] == "eu" and "token" not in view["section"]
    assert view["section"]["listen_port"] == str(init.job(guid).port)
    done = init.stop(guid)
    reactor.spawned[-1].exit(0)
    await done
    assert init.config_view(guid)["section"] == {}
