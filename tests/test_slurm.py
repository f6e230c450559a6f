"""
The Slurm launcher's logic on a Clock: the daemon's side (srun's command
line, the worker's report of where it listens, the stop sequence through
``scancel``) on a fake process reactor with a fake runner of commands, and
the lifecycle of a job whose launcher can't say where it listens. No
process, no port, no sleep; the real cluster is in test_slurm_e2e.py.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest
import pytest_twisted
from _slurm_world import DEMO, TOKEN, Runner, World, config
from twisted.internet.defer import Deferred
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher

from turberfield_twisted import JobState
from turberfield_twisted.config.settings import check_config
from turberfield_twisted.configtext import parse_config
from turberfield_twisted.contract import is_loopback
from turberfield_twisted.errors import ConfigError
from turberfield_twisted.launch.ports import PortBook
from turberfield_twisted.launch.router import ModuleLaunchers
from turberfield_twisted.launch.slurm.launcher import SlurmLauncher, SlurmProcess
from turberfield_twisted.launch.slurm.placement import Ran
from turberfield_twisted.testing.fakes import FakeProcessReactor
from turberfield_twisted.testing.ports import free_ports
from turberfield_twisted.worker.parent import listening_host, slurm_step

# -- config ------------------------------------------------------------------


def test_a_slurm_module_section_is_read():
    """launcher = slurm and its slurm_args (shell words, each --name=value) are kept."""
    cfg = config("launcher = slurm\nslurm_args = --partition=debug --time=1:00:00\n"
                 "  --constraint='a&b'\n")
    found = check_config(cfg, "init").module(DEMO)
    assert found.launcher == "slurm"
    assert found.slurm_args == ("--partition=debug", "--time=1:00:00", "--constraint=a&b")
    assert check_config(config(""), "init").module(DEMO).launcher == "local"


@pytest.mark.parametrize(("extra", "key"), [
    ("warm = true\n", "warm"),
    ("max_memory = 100M\n", "max_memory"),
    ("max_cpu_seconds = 60\n", "max_cpu_seconds"),
    ("\n[job:one]\nmodule = turberfield_twisted.demo.hello\nmax_open_files = 64\n",
     "max_open_files"),
])
def test_what_does_not_apply_on_a_node_is_refused_at_its_line(extra, key):
    """Warm launch and this host's limits can't apply to a worker that Slurm runs."""
    text = f"[init]\n\n[{DEMO}]\nlauncher = slurm\n{extra}"
    with pytest.raises(ConfigError) as caught:
        check_config(parse_config(text, source="user.cfg"), "init")
    line = text.splitlines().index(next(x for x in text.splitlines() if x.startswith(key))) + 1
    assert str(caught.value).startswith(f"user.cfg, line {line}: key {key!r}")
    assert "Slurm" in str(caught.value)


# -- the worker's side of its report -----------------------------------------------


def test_loopback_is_told_from_everything_else():
    """Only loopback addresses and localhost are loopback: 0.0.0.0 and names are not."""
    assert all(map(is_loopback, ["127.0.0.1", "127.3.4.5", "::1", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "10.203.0.1", "node7", "fe80::1"]))


def test_a_worker_reports_its_own_address_or_its_nodes():
    """A worker bound to one address reports it; bound to all, its address on the route toward
    the daemon if it knows the daemon's, else what its node's name resolves to."""
    asked = []

    def resolve(name: str, *args: Any) -> list[Any]:
        asked.append((name, args[0]))
        return [(None, None, None, "", ("10.1.2.3", 0))]

    env = {"SLURMD_NODENAME": "node7"}
    assert listening_host("10.9.9.9", env, resolve) == "10.9.9.9"
    assert listening_host("0.0.0.0", env, resolve) == "10.1.2.3"
    assert listening_host("localhost", env, resolve) == "10.1.2.3"
    assert listening_host("0.0.0.0", env, resolve, toward="127.0.0.1") == "127.0.0.1"
    assert [name for name, _ in asked] == ["node7", "localhost"]
    assert slurm_step({"SLURM_JOB_ID": "12", "SLURM_STEP_ID": "0"}) == "12.0"
    assert slurm_step({"SLURM_JOB_ID": "12"}) is None
    assert slurm_step({"SLURM_JOB_ID": "12;x", "SLURM_STEP_ID": "0"}) is None
    assert slurm_step({"SLURM_JOB_ID": "12", "SLURM_STEP_ID": "\u0661"}) is None  # not ASCII


# -- spawning ----------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_slurm_job_is_srun_under_its_guard_with_its_config_on_stdin():
    """The guard runs srun --ntasks=1 --job-name=GUID [slurm_args] python -P -m MODULE ..."""
    w = World()
    guid = await w.init.launch(DEMO, guid="g1")
    [spawned] = w.reactor.spawned
    job = w.init.job(guid)
    assert spawned.args == [
        "/py", "-P", "-m", "turberfield_twisted.launch.slurm.guard",
        "/usr/bin/srun", "--ntasks=1", "--job-name=g1", "--time=5", "--qos=low",
        "/py", "-P", "-m", DEMO, "--guid", "g1", "--port", str(job.port)]
    assert b"[g1]" in b"".join(spawned.written) and spawned.stdin_closed
    assert set(spawned.env) <= {"PATH", "LANG", "PYTHONUNBUFFERED", "PYTHONPATH", "SLURM_CONF"}
    assert isinstance(job.process, SlurmProcess) and job.pid == spawned.pid
    assert (job.state, job.host) == (JobState.STARTING, "")
    assert w.http.asked == []  # nowhere to ask yet


def test_the_port_of_a_slurm_job_is_not_probed_here():
    """A port bound here is still handed out: the worker binds it on its node."""
    launcher = SlurmLauncher(FakeProcessReactor(), srun="/s", scancel="/c", run=Runner())
    with free_ports(10) as held, socket.socket() as sock:
        # as free_ports' own probe does: a connection an earlier test closed may
        # leave the port in TIME_WAIT, which does not stop a listener
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", held.low))
        sock.listen()
        assert launcher.port_in_use(DEMO, "127.0.0.1", held.low) is False
        chosen = PortBook().choose(held.ports, busy={held.low + 1}, in_use=lambda port:
                                   launcher.port_in_use(DEMO, "127.0.0.1", port))
    assert chosen == held.low
    assert launcher.address(DEMO, "127.0.0.1") is None


def test_the_slurm_environment_reaches_srun(monkeypatch):
    """SLURM_CONF is passed to srun (and on to the task) explicitly: nothing else leaks."""
    monkeypatch.setenv("SLURM_CONF", "/etc/site/slurm.conf")
    monkeypatch.setenv("SECRET_THING", "x")
    launcher = SlurmLauncher(FakeProcessReactor(), pythonpath="/srv/lib", run=Runner())
    assert launcher.env["SLURM_CONF"] == "/etc/site/slurm.conf"
    assert launcher.env["PYTHONPATH"] == "/srv/lib" and "SECRET_THING" not in launcher.env


@pytest_twisted.ensureDeferred
async def test_without_srun_a_slurm_module_is_refused_at_launch():
    """No srun on the daemon's PATH: the launch is refused, saying why."""
    from turberfield_twisted import UnknownModule

    launcher = SlurmLauncher(FakeProcessReactor(), srun=None, run=Runner())
    with pytest.raises(UnknownModule, match="srun"):
        launcher.check(DEMO)


# -- where it listens ---------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_job_is_ready_once_it_said_where_and_answered_there():
    """The report gives the job its host; one health check there makes it ready."""
    w = World()
    guid = await w.init.launch(DEMO, guid="g1")
    job = w.init.job(guid)
    assert await w.report(guid, step="12.0") == (202, {"accepted": True})
    assert job.state is JobState.READY and job.host == "127.0.0.1"
    assert w.http.asked == [f"http://127.0.0.1:{job.port}/health"]
    assert job.process.step == "12.0"


@pytest_twisted.ensureDeferred
async def test_a_report_needs_the_jobs_token_and_a_well_formed_body():
    """Wrong token 401; a bad host, port or step 400; another port than its own, or a second
    report, 409."""
    w = World()
    guid = await w.init.launch(DEMO, guid="g1")
    job = w.init.job(guid)
    path = f"/jobs/{guid}/listening"
    good = {"host": "127.0.0.1", "port": job.port}
    assert (await w.call("POST", path, good, TOKEN))[0] == 401
    for bad in ({"host": "0.0.0.0"}, {"host": "node7"}, {"host": 7}, {"port": 70000},
                {"port": str(job.port)}, {"step": "--user=root"}, {"step": "1.2.3"},
                {"extra": 1}):
        code, body = await w.call("POST", path, {**good, **bad}, job.token)
        assert code == 400 and body["error"], bad
    code, body = await w.call("POST", path, {**good, "port": job.port + 1}, job.token)
    assert code == 409 and "another port" in body["error"]
    assert job.state is JobState.STARTING
    assert (await w.report(guid))[0] == 202
    code, body = await w.report(guid)
    assert code == 409 and "ready" in body["error"]


@pytest_twisted.ensureDeferred
async def test_a_local_job_can_not_report_an_address():
    """A job that runs here says it listens on its ready fd: a report is refused (409)."""
    w = World(module="")
    w.http.get = lambda url, **kwargs: Deferred()  # it stays starting
    guid = await w.init.launch(DEMO, guid="g1")
    code, body = await w.report(guid)
    assert code == 409 and "ready fd" in body["error"]
    assert w.init.job(guid).host == "127.0.0.1"


@pytest_twisted.ensureDeferred
async def test_an_address_that_is_not_its_nodes_is_refused_and_never_reached():
    """
    A report of an address that is not its Slurm node's NodeAddr (the cloud
    metadata address, another node's): 409 and a log line with the guid; the job
    stays starting with no address, nothing is asked there; a true report then holds.
    """
    w = World()
    guid = await w.init.launch(DEMO, guid="g1")
    job = w.init.job(guid)
    logged = EventLoggingObserver()
    globalLogPublisher.addObserver(logged)
    try:
        for host in ("169.254.169.254", "10.0.0.8", "127.0.0.2"):
            code, body = await w.report(guid, host=host)
            assert code == 409, body
            assert body["error"] == (f"job g1 says it listens on {host}, but Slurm runs it on"
                                     " node7 (127.0.0.1)")
    finally:
        globalLogPublisher.removeObserver(logged)
    refused = [event for event in logged if "is refused" in event["log_format"]]
    assert [event["guid"] for event in refused] == ["g1"] * 3
    assert job.state is JobState.STARTING and job.host == "" and w.http.asked == []
    code, body = await w.call("GET", "/jobs/g1/proxy/secrets")
    assert code == 502 and "has not said where it listens" in body["error"]
    assert (await w.report(guid))[0] == 202
    assert job.state is JobState.READY and job.host == "127.0.0.1"
    assert w.http.asked == [f"http://127.0.0.1:{job.port}/health"]


@pytest_twisted.ensureDeferred
async def test_a_step_that_is_not_the_jobs_is_refused_and_slurm_not_answering_is_503():
    """The step must be of the Slurm job named by the guid (and named at all); squeue failing:
    503, since where the worker runs can't be known."""
    w = World()
    guid = await w.init.launch(DEMO, guid="g1")
    w.runner.slurm["14"] = "another-job|node7|RUNNING"
    code, body = await w.report(guid, step="14.0")
    assert code == 409 and body["error"] == "Slurm job 14 is not job g1's"
    code, body = await w.report(guid, step=None)
    assert code == 409 and body["error"] == "job g1 did not say which Slurm step it runs in"
    code, body = await w.report(guid, step="99.0")
    assert code == 503 and "Invalid job id" in body["error"]
    assert [argv[1:] for argv in w.runner.asked] == [
        ["--noheader", f"--jobs={n}", "--format=%j|%N|%T"] for n in ("14", "99")]
    assert w.init.job(guid).host == "" and w.http.asked == []


# -- stopping --------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_stop_is_scancel_term_then_scancel_after_stop_timeout():
    """SIGTERM to the task through Slurm; the step cancelled stop_timeout later; then exited."""
    w = World()
    guid = await w.init.launch(DEMO, guid="g1")
    await w.report(guid, step="12.0")
    [spawned] = w.reactor.spawned
    stopped = w.init.stop(guid)
    assert w.runner.commands == [["/usr/bin/scancel", "--signal=TERM", "12.0"]]
    w.reactor.advance(4.9)
    assert len(w.runner.commands) == 1
    w.reactor.advance(0.1)  # stop_timeout is 5
    assert w.runner.commands[-1] == ["/usr/bin/scancel", "12.0"]
    assert spawned.signals == []  # the guard is left to srun's end
    spawned.exit(0)
    assert (await stopped).code == 0 and w.init.job(guid).state is JobState.EXITED
    assert len(w.runner.commands) == 2  # nothing once srun has ended


@pytest_twisted.ensureDeferred
async def test_before_its_step_is_known_a_stop_is_sigterm_to_the_guard():
    """No step yet (pending, or not listening): SIGTERM to the guard, whose srun cancels."""
    w = World()
    guid = await w.init.launch(DEMO, guid="g1")
    [spawned] = w.reactor.spawned
    w.init.stop(guid)
    assert spawned.signals == ["TERM"] and w.runner.commands == []
    w.reactor.advance(5)
    assert spawned.signals == ["TERM", "TERM"]  # SIGKILL asks the guard the same


@pytest_twisted.ensureDeferred
async def test_a_failed_scancel_falls_back_to_the_guard():
    """scancel refused (say, slurmctld unreachable): the guard's srun cancels its step."""
    w = World()
    guid = await w.init.launch(DEMO, guid="g1")
    await w.report(guid, step="12.0")
    w.runner.answer = Ran(1, "", "scancel: error: Kill job error on job id 12: Invalid job id\n")
    w.init.stop(guid)
    assert w.reactor.spawned[0].signals == ["TERM"]


@pytest_twisted.ensureDeferred
async def test_a_killed_task_is_restarted_as_a_new_slurm_job():
    """srun exits 137 when its task is killed: a crash, restarted at once by a new srun."""
    w = World()
    guid = await w.init.launch(DEMO, guid="g1")
    await w.report(guid, step="12.0")
    w.reactor.spawned[0].exit(137)
    w.reactor.advance(0)  # the first restart is at once
    job = w.init.job(guid)
    assert job.state is JobState.STARTING and job.restarts == 1
    assert len(w.reactor.spawned) == 2 and job.host == ""
    await w.report(guid, step="13.0")
    assert job.state is JobState.READY and job.process.step == "13.0"


def test_the_slurm_launcher_and_its_processes_keep_to_their_interfaces():
    """SlurmLauncher and ModuleLaunchers are ILaunchers; a SlurmProcess is an IRemoteProcess."""
    from zope.interface.verify import verifyClass

    from turberfield_twisted.launch.interfaces import ILauncher, IRemoteProcess

    assert verifyClass(ILauncher, SlurmLauncher) and verifyClass(ILauncher, ModuleLaunchers)
    assert verifyClass(IRemoteProcess, SlurmProcess)
