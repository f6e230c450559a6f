"""
Jobs as Slurm job steps, end to end: a real single-node Slurm cluster
(munged, slurmctld and slurmd, on 127.0.0.1 only, on ports from the kit's
free_ports, as srun's are), started by the ``cluster`` fixture (which
installs Debian's slurm-wlm and munge where they are missing, as root;
skipped with the reason where it can't); a real daemon, real workers on
ports from free_ports, real HTTP.

``squeue`` has no event to wait on: where a test waits for Slurm's view to
change, it asks ``squeue`` every 0.1 s for at most 30 s (``poll``), a
bounded poll of an external system. Everything else waits on an event:
the daemon's answers and log lines, pidfds.
"""

from __future__ import annotations

import json
import os
import signal
import socket
from typing import Any

import pytest
import pytest_twisted
import treq
from _system import absent

from turberfield_twisted.testing.daemon import Daemon
from turberfield_twisted.testing.ports import PortRange, free_ports
from turberfield_twisted.testing.procs import children_of, processes, wait_gone
from turberfield_twisted.testing.slurmcluster import SlurmCluster, poll, slurm_missing

DEMO = "turberfield_twisted.demo.hello"
HANG = "turberfield_twisted.testing.hang"
DEAF = "turberfield_twisted.testing.deaf"
ECHO = "turberfield_twisted.testing.echo_paths"


def config_text(ports: PortRange) -> str:
    """The daemon's config: its modules launched through Slurm, on child ``ports``."""
    return f"""
[proactor]
listen_port = 0
child_port_min = {ports.low}
child_port_max = {ports.high}
ready_timeout = 30
stop_timeout = 2

[{DEMO}]
launcher = slurm
slurm_args = --time=5

[{HANG}]
launcher = slurm

[{DEAF}]
launcher = slurm
slurm_args = --partition=nosuch
restart = never

[{ECHO}]
launcher = slurm
listen_addr = 127.0.0.2
restart = never
"""


@pytest_twisted.async_yield_fixture(scope="module")
async def cluster() -> Any:
    """A single-node Slurm cluster for this module's tests; stopped (by pid) after them."""
    from twisted.internet import reactor

    reason = slurm_missing()
    if reason is not None:
        absent(f"no Slurm cluster here: {reason}")
    with free_ports(100) as ports:  # srun's the first 80, then slurmctld's and slurmd's
        started = await SlurmCluster.start(reactor, ports.low + 80, ports.low + 81,
                                           range(ports.low, ports.low + 80))
        yield started
        await started.stop()


@pytest.fixture
def child_ports(take_ports: Any) -> PortRange:
    """The daemon's child ports: a hundred from free_ports, held for the test."""
    return take_ports(100)


@pytest_twisted.async_yield_fixture
async def daemon(reactor: Any, tmp_path: Any, cluster: SlurmCluster,
                 child_ports: PortRange) -> Any:
    """
    A ``twistd -n proactor`` whose demo module runs on ``cluster``
    (``SLURM_CONF`` in its environment). After the test, however it ended,
    the daemon and every guard it started are gone.
    """
    config = tmp_path / "proactor.cfg"
    config.write_text(config_text(child_ports))
    started = Daemon.start(reactor, tmp_path / "state", config=config, cwd=tmp_path,
                           env={"SLURM_CONF": str(cluster.conf)})
    await started.listening.addTimeout(30, reactor)
    yield started
    await started.stop(reactor, 60)  # and its guards; killed if they do not end
    ours = {child.pid for child in cluster.children}
    assert set(children_of(os.getpid())) <= ours


async def call(reactor: Any, daemon: Daemon, method: str, path: str,
               body: Any = None) -> tuple[int, Any]:
    return await daemon.call(reactor, method, path, body, timeout=40)


async def launch_ready(reactor: Any, daemon: Daemon, module: str = DEMO) -> dict[str, Any]:
    code, job = await call(reactor, daemon, "POST", "/jobs", {"module": module})
    assert code == 201, job
    code, job = await call(reactor, daemon, "GET", f"/jobs/{job['guid']}?wait=ready&timeout=40")
    assert job["state"] == "ready", job
    return job


def task_pids(guid: str, module: str = DEMO) -> list[int]:
    """The worker processes of job ``guid`` (``python -P -m MODULE --guid G``) on this node."""
    task = ("-P", "-m", module, "--guid", guid)
    return [proc.pid for proc in processes(lambda proc: proc.argv[1:6] == task, argv=True)]


@pytest_twisted.ensureDeferred
async def test_a_slurm_job_answers_through_the_relay_shows_in_squeue_and_is_gone_after_stop(
        reactor, daemon, cluster):
    """
    Ready once it said where it listens and answered there; relayed to;
    in squeue by its guid, with its slurm_args; a stop is a graceful
    SIGTERM (exit 0), and then Slurm has no such job.
    """
    job = await launch_ready(reactor, daemon)
    guid = job["guid"]
    code, body = await call(reactor, daemon, "GET", f"/jobs/{guid}/proxy/")
    assert code == 200 and body["guid"] == guid and body["config"]["greeting"] == "hello"
    [running] = await cluster.named(guid)
    assert (running.state, running.time_limit) == ("RUNNING", "5:00")
    await daemon.logged(rf"job {guid} runs as Slurm step {running.id}\.0 on 127\.0\.0\.1")
    await daemon.logged(rf"job {guid} says it listens on 127\.0\.0\.1:{job['port']}")
    [task] = task_pids(guid)
    assert task not in children_of(daemon.pid or 0)  # slurmstepd's, not the daemon's
    code, _ = await call(reactor, daemon, "DELETE", f"/jobs/{guid}")
    assert code == 202
    code, job = await call(reactor, daemon, "GET", f"/jobs/{guid}?wait=exited&timeout=40")
    assert (job["state"], job["exit_code"]) == ("exited", 0)  # it stopped on SIGTERM
    await daemon.logged(rf"job {guid}: scancel --signal=TERM {running.id}\.0")
    await poll(reactor, lambda: _gone(cluster, guid), 30)
    await wait_gone(reactor, [task])


async def _gone(cluster: SlurmCluster, name: str) -> bool:
    return not await cluster.named(name)


@pytest_twisted.ensureDeferred
async def test_kill_9_of_the_task_is_restarted_as_a_new_slurm_job(reactor, daemon, cluster):
    """The task killed on its node: srun exits, the job restarts as a new Slurm job."""
    job = await launch_ready(reactor, daemon)
    guid = job["guid"]
    [first] = await cluster.named(guid)
    [task] = task_pids(guid)
    seen = len(daemon.lines)
    os.kill(task, signal.SIGKILL)
    await daemon.logged(rf"job {guid} \(.*\) backoff", after=seen).addTimeout(30, reactor)
    await daemon.logged(rf"job {guid} \(.*\) ready", after=seen).addTimeout(40, reactor)
    code, job = await call(reactor, daemon, "GET", f"/jobs/{guid}")
    assert (job["state"], job["restarts"]) == ("ready", 1)
    assert "exit 137" in job["last_error"]
    now = await cluster.named(guid)
    assert [j.state for j in now if j.id != first.id] == ["RUNNING"]
    await poll(reactor, lambda: _only(cluster, guid, first.id), 30)
    code, body = await call(reactor, daemon, "GET", f"/jobs/{guid}/proxy/")
    assert code == 200 and body["guid"] == guid


async def _only(cluster: SlurmCluster, name: str, old: str) -> bool:
    return all(job.id != old for job in await cluster.named(name))


@pytest_twisted.ensureDeferred
async def test_a_task_that_ignores_sigterm_has_its_step_cancelled_after_stop_timeout(
        reactor, daemon, cluster):
    """scancel --signal=TERM first; the task ignores it; stop_timeout later, scancel of the
    step ends it, and Slurm has no such job."""
    job = await launch_ready(reactor, daemon, HANG)
    guid = job["guid"]
    [running] = await cluster.named(guid)
    [task] = task_pids(guid, HANG)
    await call(reactor, daemon, "DELETE", f"/jobs/{guid}")
    await daemon.logged(r"hang: SIGTERM ignored").addTimeout(20, reactor)
    _, job = await call(reactor, daemon, "GET", f"/jobs/{guid}?wait=exited&timeout=40")
    assert (job["state"], job["exit_code"]) == ("exited", 137)  # srun: its task was killed
    await daemon.logged(rf"job {guid}: scancel {running.id}\.0$")
    await wait_gone(reactor, [task])
    await poll(reactor, lambda: _gone(cluster, guid), 30)


@pytest_twisted.ensureDeferred
async def test_a_job_slurm_refuses_fails_with_srun_saying_why(reactor, daemon, cluster):
    """An unknown partition: srun can't allocate, the job is failed, last_error says why."""
    code, job = await call(reactor, daemon, "POST", "/jobs", {"module": DEAF})
    assert code == 201, job
    guid = job["guid"]
    _, job = await call(reactor, daemon, "GET", f"/jobs/{guid}?wait=failed&timeout=40")
    assert job["state"] == "failed" and "Invalid partition" in job["last_error"]
    assert await cluster.named(guid) == []


@pytest_twisted.ensureDeferred
async def test_a_port_taken_on_the_node_moves_the_job_to_the_next(reactor, daemon, cluster,
                                                                   child_ports):
    """The port is not probed here: the worker can't bind it on its node, exits 75, and the
    job starts again on the next port."""
    first = child_ports.low
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past an earlier TIME_WAIT
    holder.bind(("127.0.0.1", first))
    holder.listen()
    try:
        job = await launch_ready(reactor, daemon)
    finally:
        holder.close()
    assert job["port"] == first + 1 and job["restarts"] == 0
    await daemon.logged(rf"job {job['guid']} could not bind port {first}: trying the next")


@pytest_twisted.ensureDeferred
async def test_a_worker_reporting_an_address_that_is_not_its_nodes_is_refused(
        reactor, daemon, cluster):
    """
    A worker bound to 127.0.0.2 reports it; its node (localhost) resolves to 127.0.0.1: the
    report is refused (409, logged with the guid, the worker told why), the job has no
    address, so the relay sends nothing (nor the job's token) there, and it is never ready.
    """
    code, job = await call(reactor, daemon, "POST", "/jobs", {"module": ECHO})
    assert code == 201, job
    guid = job["guid"]
    refused = (rf"job {guid}: its report of where it listens is refused: job {guid} says it"
               rf" listens on 127\.0\.0\.2, but Slurm runs it on localhost \(127\.0\.0\.1\)")
    await daemon.logged(refused).addTimeout(40, reactor)
    await daemon.logged(rf"job {guid}: could not tell the initiator where it listens: .*"
                        r"HTTP 409").addTimeout(20, reactor)
    code, body = await call(reactor, daemon, "GET", f"/jobs/{guid}/proxy/anything")
    assert code == 502 and "has not said where it listens" in body["error"]
    code, job = await call(reactor, daemon, "GET", f"/jobs/{guid}")
    assert job["state"] == "starting"
    believed = f"job {guid} says it listens on 127.0.0.2:"
    assert not [line for line in daemon.lines if believed in line]
    [task] = task_pids(guid, ECHO)
    code, _ = await call(reactor, daemon, "DELETE", f"/jobs/{guid}")
    _, job = await call(reactor, daemon, "GET", f"/jobs/{guid}?wait=exited&timeout=40")
    assert job["state"] == "exited"
    await wait_gone(reactor, [task])
    await poll(reactor, lambda: _gone(cluster, guid), 30)


@pytest_twisted.ensureDeferred
async def test_a_sigkilled_daemon_leaves_no_slurm_job(reactor, daemon, cluster):
    """SIGKILL of the daemon: each guard's lifeline ends, its srun cancels its step, and
    neither Slurm nor this host keeps anything of the jobs."""
    guids = [(await launch_ready(reactor, daemon))["guid"] for _ in range(2)]
    for guid in guids:
        assert [job.state for job in await cluster.named(guid)] == ["RUNNING"]
    guards = children_of(daemon.pid or 0)
    tasks = [pid for guid in guids for pid in task_pids(guid)]
    assert len(guards) == 2 and len(tasks) == 2
    daemon.signal(signal.SIGKILL)
    await daemon.ended.addTimeout(30, reactor)
    await wait_gone(reactor, [*guards, *tasks], 60)
    for guid in guids:
        await poll(reactor, lambda guid=guid: _gone(cluster, guid), 30)


@pytest_twisted.ensureDeferred
async def test_a_slurm_worker_reaches_a_tls_daemon_with_the_ca_it_was_handed(
        reactor: Any, tmp_path: Any, cluster: SlurmCluster, child_ports: PortRange) -> None:
    """
    The daemon on ssl: with tls_ca: a Slurm job step says where it listens over TLS,
    checking the daemon against the CA in its config (stdin), and is then ready.
    """
    from _pki import make_pki

    pki = make_pki(tmp_path / "pki")
    config = tmp_path / "proactor.cfg"
    config.write_text(config_text(child_ports).replace(
        "[proactor]\n", f"[proactor]\ntls_ca = {pki.ca}\n", 1))
    with free_ports(1) as api:
        started = Daemon.start(reactor, tmp_path / "state", config=config, cwd=tmp_path,
                               env={"SLURM_CONF": str(cluster.conf)},
                               listen=f"ssl:{api.low}:privateKey={pki.key}:certKey={pki.cert}"
                                      ":interface=127.0.0.1")
        try:
            url = await started.listening.addTimeout(30, reactor)
            assert url.startswith("https://")
            from twisted.internet.ssl import Certificate
            from twisted.web.client import Agent, BrowserLikePolicyForHTTPS

            agent = Agent(reactor, BrowserLikePolicyForHTTPS(
                trustRoot=Certificate.loadPEM(pki.ca.read_bytes())))
            response = await treq.post(url + "/jobs", json={"module": DEMO},
                                       headers=started.headers(), agent=agent, timeout=40,
                                       reactor=reactor)
            job = json.loads(await response.content())
            assert response.code == 201, job
            response = await treq.get(f"{url}/jobs/{job['guid']}?wait=ready&timeout=40",
                                      headers=started.headers(), agent=agent, timeout=50,
                                      reactor=reactor)
            job = json.loads(await response.content())
            assert job["state"] == "ready", job
            await started.logged(rf"job {job['guid']} says it listens on 127\.0\.0\.1:")
        finally:
            await started.stop(reactor, 60)
    ours = {child.pid for child in cluster.children}
    assert set(children_of(os.getpid())) <= ours
