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

import os
import re
import signal
from typing import Any

import pytest_twisted
from _system import absent

from turberfield_twisted.testing.daemon import Daemon
from turberfield_twisted.testing.ports import PortRange, free_ports
from turberfield_twisted.testing.procs import children_of, processes, wait_gone
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
    return await daemon.call(reactor, method, path, body, timeout=90)


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


async def launch_ready(reactor: Any, daemon: Daemon, module: str = DEMO) -> dict[str, Any]:
    """Launch a job of ``module``; its view once ready."""
    code, job = await call(reactor, daemon, "POST", "/jobs", {"module": module})
    assert code == 201, job
    code, job = await call(reactor, daemon, "GET", f"/jobs/{job['guid']}?wait=ready&timeout=60")
    assert job["state"] == "ready", job
    return job


async def running_on(cluster: SlurmNodes) -> dict[str, str]:
    """Each running Slurm job's name (a job's guid) and its node, as squeue says."""
    return {job.name: job.node for job in await cluster.jobs() if job.state == "RUNNING"}


async def spread_three(reactor: Any, daemon: Daemon, cluster: SlurmNodes) -> dict[str, str]:
    """Three demo jobs, ready, one on each node: each guid's node."""
    guids = [(await launch_ready(reactor, daemon))["guid"] for _ in range(NODES)]
    nodes = await running_on(cluster)
    assert sorted(nodes[guid] for guid in guids) == [node.name for node in cluster.nodes]
    return {guid: nodes[guid] for guid in guids}


@pytest_twisted.ensureDeferred
async def test_three_jobs_spread_on_three_nodes_are_reached_there_and_squeue_agrees(
        reactor, daemon, cluster):
    """
    Three jobs, one on each node: GET /jobs gives each its node and that node's
    address (its NodeAddr), as squeue and scontrol say; the relay reaches each across the
    bridge, in its node's namespace.
    """
    placed = await spread_three(reactor, daemon, cluster)
    code, body = await call(reactor, daemon, "GET", "/jobs")
    assert code == 200
    views = {job["guid"]: job for job in body["jobs"]}
    assert {guid: views[guid]["node"] for guid in placed} == placed
    for guid, node in placed.items():
        assert views[guid]["host"] == cluster.node(node).addr
        await daemon.logged(rf"job {guid} runs as Slurm step \d+\.0 on"
                            rf" {cluster.node(node).addr} \({node}\)")
        code, answer = await call(reactor, daemon, "GET", f"/jobs/{guid}/proxy/")
        assert code == 200 and answer["guid"] == guid
        [task] = task_pids(guid)
        assert task in cluster.pids(node)  # it runs in that node's namespace


@pytest_twisted.ensureDeferred
async def test_a_worker_reporting_another_address_than_its_nodes_is_refused(
        reactor, daemon, cluster):
    """
    A worker bound to 127.0.0.1 on its node reports that; its node's NodeAddr is another:
    the report is refused (409, logged with the guid), the job has no address, and the
    relay sends nothing there.
    """
    code, job = await call(reactor, daemon, "POST", "/jobs", {"module": ECHO})
    assert code == 201, job
    guid = job["guid"]
    refused = (rf"job {guid}: its report of where it listens is refused: job {guid} says it"
               rf" listens on 127\.0\.0\.1, but Slurm runs it on (node\d) \((10\.77\.[\d.]+)\)")
    at = await daemon.logged(refused).addTimeout(80, reactor)
    node, addr = re.search(refused, daemon.lines[at]).groups()  # type: ignore[union-attr]
    assert cluster.node(node).addr == addr
    await daemon.logged(rf"job {guid}: could not tell the initiator where it listens: .*"
                        r"HTTP 409").addTimeout(20, reactor)
    code, body = await call(reactor, daemon, "GET", f"/jobs/{guid}/proxy/anything")
    assert code == 502 and "has not said where it listens" in body["error"]
    code, job = await call(reactor, daemon, "GET", f"/jobs/{guid}")
    assert (job["state"], job["host"], job["node"]) == ("starting", None, None)
    believed = f"job {guid} says it listens on 127.0.0.1:"
    assert not [line for line in daemon.lines if believed in line]
    [task] = task_pids(guid, ECHO)
    await call(reactor, daemon, "DELETE", f"/jobs/{guid}")
    _, job = await call(reactor, daemon, "GET", f"/jobs/{guid}?wait=exited&timeout=40")
    assert job["state"] == "exited"
    await wait_gone(reactor, [task])


@pytest_twisted.ensureDeferred
async def test_a_node_killed_whole_has_its_job_ready_again_on_another_node(
        reactor, daemon, cluster):
    """
    Every process of one node SIGKILLed (slurmd, slurmstepd, task): srun hears of the node
    failure, its Slurm job is fenced (scancel), and the job is ready again on another node,
    that node excluded for it (GET /slurm/nodes), last_error naming it; the other jobs go on
    untouched.
    """
    placed = await spread_three(reactor, daemon, cluster)
    guid, dead = next(iter(placed.items()))
    seen = len(daemon.lines)
    try:
        killed = reactor.seconds()
        await cluster.kill_node(dead)
        await daemon.logged(rf"job {guid}: Slurm node {dead} failed", after=seen
                            ).addTimeout(60, reactor)
        told = reactor.seconds()
        await daemon.logged(rf"job {guid}: fenced: scancel \d+", after=seen)
        await daemon.logged(rf"job {guid} \(.*\) ready", after=seen).addTimeout(80, reactor)
        measured("node death to ready elsewhere", reactor.seconds() - killed)
        measured("(srun's word of it to ready elsewhere)", reactor.seconds() - told)
        code, job = await call(reactor, daemon, "GET", f"/jobs/{guid}")
        assert (job["state"], job["restarts"]) == ("ready", 1)
        assert job["node"] not in (dead, None) and f"Slurm node {dead} failed" in job["last_error"]
        code, answer = await call(reactor, daemon, "GET", f"/jobs/{guid}/proxy/")
        assert code == 200 and answer["guid"] == guid
        code, body = await call(reactor, daemon, "GET", "/slurm/nodes")
        [view] = [view for view in body["nodes"] if view["name"] == dead]
        assert view["excluded_for"] == [guid] and not view["excluded"]
        assert [f["guid"] for f in view["failures"]] == [guid]
        await daemon.logged(rf"job {guid}: its step avoids {dead}", after=seen)
        for other in placed:
            code, job = await call(reactor, daemon, "GET", f"/jobs/{other}")
            assert job["state"] == "ready" and (other == guid or job["restarts"] == 0)
    finally:
        await cluster.revive(dead)


@pytest_twisted.ensureDeferred
async def test_a_node_cut_off_has_its_job_restarted_elsewhere_and_one_copy_after_the_link_returns(
        reactor, daemon, cluster):
    """
    One node's link cut, its worker living on: the job is fenced and ready again on another
    node; when the link is back, the old copy is gone (Slurm kills it), one step shows in
    squeue and one copy answers.
    """
    placed = await spread_three(reactor, daemon, cluster)
    guid, cut = next(iter(placed.items()))
    [old_task] = task_pids(guid)
    seen = len(daemon.lines)
    try:
        cut_at = reactor.seconds()
        cluster.cut(cut)
        await daemon.logged(rf"job {guid}: fenced: scancel \d+", after=seen
                            ).addTimeout(60, reactor)
        fenced = reactor.seconds()
        measured("partition to fence", fenced - cut_at)
        await daemon.logged(rf"job {guid} \(.*\) ready", after=seen).addTimeout(80, reactor)
        measured("partition to ready elsewhere", reactor.seconds() - cut_at)
        measured("(fence to ready elsewhere)", reactor.seconds() - fenced)
        assert old_task in task_pids(guid)  # cut off, not dead
    finally:
        cluster.mend(cut)
    await wait_gone(reactor, [old_task], 90)
    await poll(reactor, cluster.all_up, 90)
    code, job = await call(reactor, daemon, "GET", f"/jobs/{guid}")
    assert job["state"] == "ready" and job["node"] != cut
    assert len(task_pids(guid)) == 1
    assert len(await cluster.steps(guid)) == 1
    code, answer = await call(reactor, daemon, "GET", f"/jobs/{guid}/proxy/")
    assert code == 200 and answer["guid"] == guid


@pytest_twisted.ensureDeferred
async def test_a_sigkilled_daemon_with_jobs_on_three_nodes_leaves_squeue_empty(
        reactor, daemon, cluster):
    """SIGKILL of the daemon with a job on each node: every guard's lifeline ends, its srun
    cancels its step, and squeue is empty; no task is left on any node."""
    placed = await spread_three(reactor, daemon, cluster)
    guards = children_of(daemon.pid or 0)
    tasks = [pid for guid in placed for pid in task_pids(guid)]
    assert len(guards) == NODES and len(tasks) == NODES
    daemon.signal(signal.SIGKILL)
    await daemon.ended.addTimeout(30, reactor)
    killed = reactor.seconds()
    await poll(reactor, lambda: _empty(cluster, placed), 30, interval=0.02)
    measured("daemon SIGKILL to squeue empty", reactor.seconds() - killed)
    await wait_gone(reactor, [*guards, *tasks], 60)


async def _empty(cluster: SlurmNodes, names: Any) -> bool:
    return not [job for job in await cluster.jobs() if job.name in names]


def measured(what: str, seconds: float) -> None:
    """Print a measurement (``pytest -s`` shows it; README's numbers come from there)."""
    print(f"\nmeasured: {what}: {seconds:.2f} s")


async def service_on_nodes(reactor: Any, daemon: Daemon, cluster: SlurmNodes,
                           count: int) -> dict[str, str]:
    """Service grid, once its ``count`` instances are ready: each instance's node, which the
    daemon sent it to (its log), squeue and GET /services all say."""
    code, service = await call(reactor, daemon, "GET", "/services/grid?wait=ready&timeout=60")
    assert (code, service["ready"], len(service["members"])) == (200, count, count), service
    members = {job["guid"]: job["node"] for job in service["members"]}
    squeue = await poll(reactor, lambda: _running_of(cluster, set(members)), 30)
    assert squeue == members
    for guid, node in members.items():
        await daemon.logged(rf"job {guid}: spread to Slurm node {node} ").addTimeout(5, reactor)
    return members


async def _running_of(cluster: SlurmNodes, guids: set[str]) -> dict[str, str] | None:
    found = {name: node for name, node in (await running_on(cluster)).items()
             if name.startswith("grid.")}
    return found if set(found) == guids else None


@pytest_twisted.ensureDeferred
async def test_a_slurm_service_of_three_lands_one_a_node_its_relay_reaches_each_and_it_scales(
        reactor, daemon, cluster):
    """
    A service of three instances of a module Slurm runs (no listen: its address is its
    relay): one instance on each node (squeue and GET /services agree); the relay answers
    from every instance; scaled to 2, the drained one leaves squeue, and back to 3 the new
    one goes to the node left free; rolled out (no shared socket to drain), the new three
    are one a node too; removed, squeue has none of it.
    """
    asked = reactor.seconds()
    code, service = await call(reactor, daemon, "POST", "/services",
                               {"name": "grid", "module": DEMO, "instances": 3})
    assert code == 201, service
    assert (service["listen"], service["relay"], service["spread"]) == (
        None, "/services/grid/proxy/", "nodes")
    members = await service_on_nodes(reactor, daemon, cluster, 3)
    measured("Slurm service of 3, POST to all ready one a node", reactor.seconds() - asked)
    assert sorted(members.values()) == [node.name for node in cluster.nodes]
    answered = set()
    for _ in range(30):  # bounded: the relay takes each ready instance in turn
        code, answer = await call(reactor, daemon, "GET", "/services/grid/proxy/")
        assert code == 200, answer
        answered.add(answer["guid"])
        if answered == set(members):
            break
    assert answered == set(members)
    code, _ = await call(reactor, daemon, "PATCH", "/services/grid", {"instances": 2})
    assert code == 200
    two = await service_on_nodes(reactor, daemon, cluster, 2)
    [freed] = set(members.values()) - set(two.values())
    code, _ = await call(reactor, daemon, "PATCH", "/services/grid", {"instances": 3})
    assert code == 200
    three = await service_on_nodes(reactor, daemon, cluster, 3)
    [(new, node)] = [(guid, node) for guid, node in three.items() if guid not in two]
    assert node == freed, (new, three)
    old_tasks = [pid for guid in three for pid in task_pids(guid)]
    asked = reactor.seconds()
    code, _ = await call(reactor, daemon, "POST", "/services/grid/rollout")
    assert code == 202
    code, service = await call(reactor, daemon, "GET",
                               "/services/grid?wait=rollout&timeout=60")
    assert service["rollout"]["state"] == "done", service
    measured("rollout of the Slurm service of 3", reactor.seconds() - asked)
    rolled = await service_on_nodes(reactor, daemon, cluster, 3)
    assert not set(rolled) & set(three)
    assert sorted(rolled.values()) == [node.name for node in cluster.nodes]
    await wait_gone(reactor, old_tasks, 60)
    tasks = [pid for guid in rolled for pid in task_pids(guid)]
    code, _ = await call(reactor, daemon, "DELETE", "/services/grid")
    assert code == 202
    await poll(reactor, lambda: _empty(cluster, set(rolled)), 60)
    await wait_gone(reactor, tasks, 60)
