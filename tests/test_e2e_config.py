"""
A real ``twistd -n proactor`` and the ``proactor`` command, on what a
newcomer meets first: a port already taken, typos in a module's section
(warned of at start and at each reload), what a reload says needs a
restart, where the kept jobs come from, and what a live change to a
declared job lasts.
"""

from __future__ import annotations

import json
import os
import signal
from typing import Any

import pytest
import pytest_twisted
import treq
from test_cli import proactor
from twisted.internet.protocol import Factory, Protocol

from turberfield_twisted.testing.configs import DEMO
from turberfield_twisted.testing.daemon import Daemon
from turberfield_twisted.testing.ports import PortRange, free_ports
from turberfield_twisted.testing.procs import children_of, wait_gone


@pytest.fixture
def ports() -> Any:
    with free_ports(20) as held:
        yield held


def config_text(ports: PortRange, own: str = "", more: str = "") -> str:
    return (f"[proactor]\nlisten_port = 0\nchild_port_min = {ports.low + 1}\n"
            f"child_port_max = {ports.high}\n{own}\n"
            f"[{DEMO}]\ngreeting = hello\noverridable = greeting\n{more}")


async def stopped(reactor: Any, daemon: Daemon) -> None:
    """SIGTERM the daemon; wait until it and its workers are gone."""
    workers = children_of(daemon.pid or 0)
    daemon.signal(signal.SIGTERM)
    await daemon.ended.addTimeout(30, reactor)
    await wait_gone(reactor, workers)


async def get(reactor: Any, daemon: Daemon, path: str) -> Any:
    response = await treq.get(daemon.url + path, headers=daemon.headers(), timeout=40,
                              reactor=reactor)
    return json.loads(await response.content())


@pytest_twisted.ensureDeferred
async def test_a_port_in_use_at_start_is_one_line_pointing_at_listen(reactor, tmp_path, ports):
    """The API's port taken: exit 1 with one line saying so and how to choose another."""
    taken = reactor.listenTCP(ports.low, Factory.forProtocol(Protocol), interface="127.0.0.1")
    try:
        config = tmp_path / "my.cfg"
        config.write_text(config_text(ports))
        daemon = Daemon.start(reactor, tmp_path / "state", config=config, cwd=tmp_path,
                              listen=f"tcp:{ports.low}:interface=127.0.0.1")
        with pytest.raises(RuntimeError):  # it ended first
            await daemon.listening.addTimeout(30, reactor)
        status = await daemon.ended.addTimeout(30, reactor)
    finally:
        await taken.stopListening()
    assert status.code == 1
    [line] = [line for line in daemon.lines if "cannot listen" in line]
    assert f"proactor: cannot listen on tcp:{ports.low}:interface=127.0.0.1: " in line
    assert "give this one another address with --listen, e.g. --listen" in line
    assert children_of(os.getpid()) == []


@pytest_twisted.ensureDeferred
async def test_typos_are_warned_of_at_start_and_reload_which_names_what_needs_a_restart(
        reactor, tmp_path, ports):
    """
    restrat under a module: a warning with file and line at start and at each reload
    (logged, and printed by proactor reload); a changed listen_port is named at every
    reload until it is put back; the start says where the kept jobs came from.
    """
    config = tmp_path / "my.cfg"
    config.write_text(config_text(ports, more="restrat = never\n"))
    state = tmp_path / "state"
    daemon = Daemon.start(reactor, state, config=config, cwd=tmp_path)
    try:
        await daemon.listening.addTimeout(30, reactor)
        warning = (f"{config}, line 9: key 'restrat' in [{DEMO}] is not one the daemon reads"
                   " (did you mean 'restart'?): it is passed to the worker as it is")
        at = await daemon.logged("restrat")
        assert daemon.lines[at].endswith(f"[turberfield_twisted.tap#warn] config: {warning}")
        await daemon.logged(f"restored 0 kept jobs from {state / 'proactor.db'};")
        cli = ["--state-dir", str(state), "reload"]
        for port, needed in (("1", "listen_port"), ("1", "listen_port"), ("0", "-")):
            config.write_text(config_text(ports, more="restrat = never\n").replace(
                "listen_port = 0", f"listen_port = {port}"))
            code, out, err = await proactor(reactor, *cli)
            assert (code, err) == (0, ""), err
            assert f"restart_needed:  {needed}\n" in out and f"warning: {warning}\n" in out
        assert sum(line.endswith(f"config reloaded: {warning}") for line in daemon.lines) == 3
    finally:
        await stopped(reactor, daemon)
    assert children_of(os.getpid()) == []


@pytest_twisted.ensureDeferred
async def test_a_live_change_to_a_declared_job_says_it_lasts_until_the_restart(
        reactor, tmp_path, ports):
    """
    proactor config on a declared job: applied, and the answer (printed) says it lasts
    until the daemon restarts; it does, and a launched job's change is kept instead.
    """
    config = tmp_path / "my.cfg"
    config.write_text(config_text(ports, more=f"[job:cache]\nmodule = {DEMO}\ngreeting = hi\n"))
    state = tmp_path / "state"
    at = ["--state-dir", str(state)]
    daemon = Daemon.start(reactor, state, config=config, cwd=tmp_path)
    try:
        await daemon.listening.addTimeout(30, reactor)
        assert (await get(reactor, daemon, "/jobs/cache?wait=ready&timeout=30"))["state"] == (
            "ready")
        code, out, err = await proactor(reactor, *at, "config", "cache", "greeting=hej")
        assert (code, err) == (0, "")
        assert out == ("cache greeting=hej\nnote: job cache is declared in"
                       f" {config}: this change lasts until the daemon restarts, or a reload"
                       " changes its [job:cache] section; to keep it, set it there\n")
        assert (await get(reactor, daemon, "/jobs/cache/proxy/"))["config"]["greeting"] == "hej"
        code, out, _ = await proactor(reactor, *at, "launch", DEMO, "--wait")
        launched = out.strip()
        code, out, _ = await proactor(reactor, *at, "--json", "config", launched, "greeting=yo")
        assert json.loads(out)["kept"] is True and "note" not in json.loads(out)
    finally:
        await stopped(reactor, daemon)
    again = Daemon.start(reactor, state, config=config, cwd=tmp_path)
    try:
        await again.listening.addTimeout(30, reactor)
        await again.logged(f"restored 1 kept jobs from {state / 'proactor.db'}; 1 declared jobs")
        for guid, greeting in (("cache", "hi"), (launched, "yo")):
            job = await get(reactor, again, f"/jobs/{guid}?wait=ready&timeout=30")
            assert job["state"] == "ready"
            seen = await get(reactor, again, f"/jobs/{guid}/proxy/")
            assert seen["config"]["greeting"] == greeting
    finally:
        await stopped(reactor, again)
    assert children_of(os.getpid()) == []
