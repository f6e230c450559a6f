"""
The guard that runs srun for the daemon, with real processes: a stand-in
for srun (a short Python script) that says what it got on stdin and what
signal reached it. The daemon's end of the lifeline is held by the test
(fd 3 of the guard, as the Slurm launcher spawns it). No sleep: each test
waits on the stand-in's lines and the guard's end.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

import pytest
import pytest_twisted

from turberfield_twisted.testing.procs import pid_alive, wait_gone
from turberfield_twisted.testing.slurmcluster import Child

#: A stand-in for srun: echoes its stdin, reports SIGTERM and exits 0 on it
#: (as srun does once its step is cancelled); ``stubborn`` ignores SIGTERM,
#: ``exitN`` exits N, ``killed`` dies by SIGKILL.
SRUN = r"""
import os, signal, sys
mode = sys.argv[1]
def term(signum, frame):
    os.write(1, b"TERM\n")
    os._exit(0)
signal.signal(signal.SIGTERM, signal.SIG_IGN if mode == "stubborn" else term)
os.write(1, f"started {os.getpid()} {sys.stdin.read()!r}\n".encode())
if mode.startswith("exit"):
    sys.exit(int(mode[4:]))
if mode == "killed":
    os.kill(os.getpid(), signal.SIGKILL)
while True:
    signal.pause()
"""


def guard(reactor: Any, mode: str, *options: str) -> Child:
    """The guard running the stand-in in ``mode``; ``config`` on its stdin, fd 3 its lifeline."""
    child = Child("srun_guard")
    argv = [sys.executable, "-P", "-m", "turberfield_twisted.launch.slurm.guard", *options,
            sys.executable, "-c", SRUN, mode]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
           "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}
    transport = reactor.spawnProcess(child, argv[0], argv, env=env,
                                     childFDs={0: "w", 1: "r", 2: "r", 3: "w"})
    child.pid = transport.pid
    child.transport = transport  # type: ignore[attr-defined]
    transport.write(b"[g1]\nkey = v\n")
    transport.closeStdin()
    return child


async def started(reactor: Any, child: Child) -> int:
    await child.logged(r"^started \d+ '\[g1\]\\nkey = v\\n'$").addTimeout(20, reactor)
    [line] = [line for line in child.lines if line.startswith("started")]
    return int(line.split()[1])


@pytest_twisted.ensureDeferred
async def test_srun_gets_the_config_and_the_guard_exits_as_it_did(reactor):
    """stdin reaches srun; srun's exit code is the guard's (75: the next port)."""
    child = guard(reactor, "exit75")
    await started(reactor, child)
    status = await child.ended.addTimeout(20, reactor)
    assert (status.code, status.signal) == (75, None)


@pytest_twisted.ensureDeferred
async def test_a_killed_srun_is_a_guard_killed_by_the_same_signal(reactor):
    """srun ended by a signal: the guard ends by it too, so the daemon sees the same."""
    child = guard(reactor, "killed")
    status = await child.ended.addTimeout(20, reactor)
    assert status.signal == signal.SIGKILL


@pytest_twisted.ensureDeferred
async def test_a_lost_lifeline_is_sigterm_to_srun(reactor):
    """The daemon gone (its end of fd 3 closed): srun gets SIGTERM, cancels, exits."""
    child = guard(reactor, "wait")
    srun = await started(reactor, child)
    child.transport.closeChildFD(3)  # type: ignore[attr-defined]
    await child.logged("^TERM$").addTimeout(20, reactor)
    status = await child.ended.addTimeout(20, reactor)
    assert status.code == 0 and not pid_alive(srun)
    assert any("lifeline lost" in line for line in child.lines)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
@pytest_twisted.ensureDeferred
async def test_sigterm_to_the_guard_is_sigterm_to_srun(reactor, sig):
    """How the daemon cancels a step it does not know yet: the guard passes on SIGTERM."""
    child = guard(reactor, "wait")
    srun = await started(reactor, child)
    os.kill(child.pid, sig)
    await child.logged("^TERM$").addTimeout(20, reactor)
    assert (await child.ended.addTimeout(20, reactor)).code == 0
    await wait_gone(reactor, [srun])


@pytest_twisted.ensureDeferred
async def test_an_srun_that_stays_is_killed_after_the_grace(reactor):
    """srun still there --grace seconds after SIGTERM: SIGKILL, and the guard ends by it."""
    child = guard(reactor, "stubborn", "--grace=0.2")
    srun = await started(reactor, child)
    os.kill(child.pid, signal.SIGTERM)
    status = await child.ended.addTimeout(20, reactor)
    assert status.signal == signal.SIGKILL and not pid_alive(srun)
    assert any("SIGKILL" in line for line in child.lines)


@pytest_twisted.ensureDeferred
async def test_a_killed_guard_is_sigterm_to_srun(reactor):
    """The guard itself SIGKILLed: the kernel sends srun SIGTERM (PR_SET_PDEATHSIG)."""
    child = guard(reactor, "wait")
    srun = await started(reactor, child)
    os.kill(child.pid, signal.SIGKILL)
    await child.ended.addTimeout(20, reactor)
    await wait_gone(reactor, [srun], 20)


def test_the_guard_loads_nothing_of_twisted_and_only_the_contract_of_ours():
    """It costs an interpreter: the standard library and turberfield_twisted.contract."""
    import json
    import subprocess

    report = ("import json, sys, turberfield_twisted.launch.slurm.guard\n"
              "print(json.dumps(sorted(m for m in sys.modules"
              " if m.split('.')[0] in ('twisted', 'zope', 'turberfield_twisted'))))\n")
    done = subprocess.run([sys.executable, "-P", "-c", report], capture_output=True, text=True,
                          timeout=60, check=True)
    assert json.loads(done.stdout) == ["turberfield_twisted", "turberfield_twisted.contract",
                                       "turberfield_twisted.launch",
                                       "turberfield_twisted.launch.slurm",
                                       "turberfield_twisted.launch.slurm.guard"]
