"""
Jobs on a Slurm cluster of three nodes, end to end: one ``slurmctld`` and
three ``slurmd -N``, each node in a network namespace of its own, the
controller and the daemon in a head namespace, joined by a bridge
(``turberfield_twisted.testing.slurmnodes``), started once for this module;
a real daemon (in the head namespace, its API on the head's address),
real workers on the nodes, real HTTP across the bridge.

``squeue`` and ``sinfo`` have no event to wait on: where a test waits for
Slurm's view to change, it asks every 0.1 s for a bounded time (``poll``).
Everything else waits on an event: the daemon's answers and log lines,
pidfds.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest_twisted
import treq
from _system import absent

from turberfield_twisted.testing.daemon import Daemon
from turberfield_twisted.testing.ports import PortRange, free_ports
from turberfield_twisted.testing.procs import children_of, processes
from turberfield_twisted.testing.slurmcluster import poll
from turberfield_twisted.testing.slurmnodes import NODES, SlurmNodes, nodes_missing

DEMO = "turberfield_twisted.demo.hello"
ECHO = "turberfield_twisted.testing.echo_paths"


@pytest_twisted.async_yield_fixture(scope="module")
async def cluster() -> Any:
    """Three nodes for this module's tests; stopped (by pid), its network removed, after."""
    from twisted.internet import reactor

    reason = nodes_missing()
    if reason is not None:
        absent(f"no multi-node Slurm cluster here: {reason}")
    with free_ports(60) as ports:  # slurmctld's, each slurmd's, then srun's
        started = await SlurmNodes.start(reactor, ports.ports)
        yield started
        await started.stop()


def config_text(ports: PortRange) -> str:
    """The daemon's config: its modules run through Slurm on the nodes, on child ``ports``."""
    return f"""
[proactor]
listen_port = 0
insecure_listen = true
child_port_min = {ports.low}
child_port_max = {ports.high}
ready_timeout = 60
stop_timeout = 2

[{DEMO}]
launcher = slurm
listen_addr = 0.0.0.0

[{ECHO}]
launcher = slurm
listen_addr = 127.0.0.1
restart = never
"""


@pytest_twisted.async_yield_fixture
async def daemon(reactor: Any, tmp_path: Any, cluster: SlurmNodes, take_ports: Any) -> Any:
    """
    A ``twistd -n proactor`` in the head namespace, its API on the head's
    address (where the workers on the nodes call it), its modules run on
    ``cluster``. After the test the daemon and its guards are gone.
    """
    ports = take_ports(100)
    config = tmp_path / "proactor.cfg"
    config.write_text(config_text(ports))
    with free_ports(1) as api:
        started = Daemon.start(reactor, tmp_path / "state", config=config, cwd=tmp_path,
                               env={"SLURM_CONF": str(cluster.conf)},
                               listen=f"tcp:{api.low}:interface={cluster.head_addr}",
                               prefix=cluster.head_argv)
        await started.listening.addTimeout(30, reactor)
        yield started
        await started.stop(reactor, 60)
    ours = {child.pid for child in cluster.children}
    assert set(children_of(os.getpid())) <= ours


async def call(reactor: Any, daemon: Daemon, method: str, path: str,
               body: Any = None) -> tuple[int, Any]:
    response = await treq.request(method, daemon.url + path, headers=daemon.headers(),
                                  data=None if body is None else json.dumps(body).encode(),
                                  timeout=90, reactor=reactor, persistent=False)
    content = await response.content()
    try:
        return response.code, json.loads(content)
    except ValueError:
        return response.code, content


def task_pids(guid: str, module: str = DEMO) -> list[int]:
    """The worker processes of job ``guid`` (``python -P -m MODULE --guid G``), on any node."""
    task = ("-P", "-m", module, "--guid", guid)
    return [proc.pid for proc in processes(lambda proc: proc.argv[1:6] == task, argv=True)]


@pytest_twisted.ensureDeferred
async def test_three_nodes_come_up_idle_and_srun_runs_a_task_on_each(reactor, cluster):
    """Every node idle; ``srun -N3`` from the head runs one task on each, in that node's own
    namespace (its own address), with SLURMD_NODENAME set."""
    from twisted.internet.utils import getProcessOutputAndValue

    assert await cluster.all_idle()
    argv = [*cluster.head_argv, "/usr/bin/srun", f"-N{NODES}", "/bin/sh", "-c",
            "echo $SLURMD_NODENAME $(ip -4 -o addr show scope global | awk '{print $4}')"]
    out, err, code = await getProcessOutputAndValue(argv[0], argv[1:], env=cluster.env,
                                                    reactor=reactor)
    assert code == 0, err
    seen = sorted(tuple(line.split()) for line in out.decode().splitlines())
    assert seen == [(node.name, f"{node.addr}/24") for node in cluster.nodes]
    await poll(reactor, cluster.all_idle, 30)
