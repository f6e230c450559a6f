"""
A single-node Slurm cluster for tests, on loopback only: its own
``munged`` (its own key and socket), ``slurmctld`` and ``slurmd``, each a
foreground child of the test process, in a directory of its own, on the
ports it is given. :meth:`SlurmCluster.start` fires once the node is
idle; :meth:`SlurmCluster.stop` cancels what is left, stops the three by
pid and removes the directory.

``slurm.conf`` binds every daemon to 127.0.0.1
(``CommunicationParameters=NoCtldInAddrAny,NoInAddrAny``, the node's
``NodeAddr``), and ``srun``'s own ports come from ``SrunPortRange``.

:func:`slurm_missing` says why there is no Slurm here (None if there
is), having installed Debian's ``slurm-wlm`` and ``munge`` first where it
can (as root, with ``apt-get``).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater

from turberfield_twisted.testing.procs import Child, kill_left, wait_gone

__all__ = ["Child", "SlurmCluster", "SlurmJob", "poll", "slurm_missing"]

#: The programs a cluster needs.
PROGRAMS = ("munged", "slurmctld", "slurmd", "srun", "squeue", "scancel", "sinfo")


def _missing() -> list[str]:
    return [name for name in PROGRAMS
            if shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin") is None]


def slurm_missing(install: bool = True) -> str | None:
    """
    None if Slurm and munge can be run here (installing them with
    ``apt-get`` first if they are missing, ``install`` is true and this is
    root); else why not.
    """
    if os.geteuid() != 0:
        return "a test Slurm cluster runs its daemons as root"
    if not _missing():
        return None
    if not install or shutil.which("apt-get") is None:
        return f"{', '.join(_missing())} missing and no apt-get to install slurm-wlm and munge"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-qq"],
                 ["apt-get", "install", "-y", "-qq", "--no-install-recommends",
                  "slurm-wlm", "munge"]):
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600,
                              check=False)
        if done.returncode != 0:
            return f"{' '.join(argv[:2])} failed: {done.stderr.strip()[-300:]}"
    return f"still missing after apt-get: {', '.join(_missing())}" if _missing() else None


async def poll(reactor: Any, check: Callable[[], Any], timeout: float,
               interval: float = 0.1) -> Any:
    """
    Ask ``check()`` (a Deferred, a coroutine or a value) every ``interval``
    seconds until it gives something true, and return that; raise
    TimeoutError after ``timeout`` seconds. For what has no event to wait
    on, such as a job leaving ``squeue``.
    """
    deadline = reactor.seconds() + timeout
    while True:
        found = check()
        if hasattr(found, "__await__") or isinstance(found, Deferred):
            found = await found
        if found:
            return found
        if reactor.seconds() >= deadline:
            raise TimeoutError(f"not so within {timeout:g}s")
        await deferLater(reactor, interval, lambda: None)


class SlurmJob:
    """One line of ``squeue``: the job's id, name, state, time limit and, if asked, node."""

    def __init__(self, line: str):
        self.id, self.name, self.state, self.time_limit, *node = line.split("|", 4)
        self.node = node[0] if node else ""

    def __repr__(self) -> str:
        return (f"SlurmJob({self.id}, {self.name!r}, {self.state}, {self.time_limit},"
                f" {self.node!r})")


class SlurmCluster:
    """
    A one-node cluster in ``root`` (made 0755 for ``munged``'s checks):
    ``slurmctld`` on ``ctld_port``, ``slurmd`` on ``slurmd_port``,
    ``srun``'s ports from ``srun_ports``. ``env`` is what a client needs
    (``SLURM_CONF``).
    """

    def __init__(self, reactor: Any, root: Path, ctld_port: int, slurmd_port: int,
                 srun_ports: range):
        self.reactor = reactor
        self.root = root
        self.conf = root / "slurm.conf"
        self.env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
                    "SLURM_CONF": str(self.conf)}
        self.children: list[Child] = []
        self._write(ctld_port, slurmd_port, srun_ports)

    @classmethod
    async def start(cls, reactor: Any, ctld_port: int, slurmd_port: int, srun_ports: range,
                    timeout: float = 60.0) -> SlurmCluster:
        """Start a cluster in a new temporary directory; return it once its node is idle."""
        root = Path(tempfile.mkdtemp(prefix="tf-slurm-", dir="/tmp"))
        root.chmod(0o755)
        cluster = cls(reactor, root, ctld_port, slurmd_port, srun_ports)
        try:
            await cluster._run(timeout)
        except BaseException:
            await cluster.stop()
            raise
        return cluster

    def _write(self, ctld_port: int, slurmd_port: int, srun_ports: range) -> None:
        root = self.root
        for name in ("state", "spool", "run"):
            (root / name).mkdir(mode=0o755)
        keys = root / "key"
        keys.mkdir(mode=0o700)
        key = keys / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        self.conf.write_text("\n".join([
            "ClusterName=tftest", "SlurmctldHost=localhost",
            "AuthType=auth/munge", "CredType=cred/munge",
            f"AuthInfo=socket={root}/run/munge.sock",
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
            "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core",
            "SlurmUser=root", "SlurmdUser=root",
            f"StateSaveLocation={root}/state", f"SlurmdSpoolDir={root}/spool",
            f"SlurmctldPidFile={root}/run/slurmctld.pid",
            f"SlurmdPidFile={root}/run/slurmd.pid",
            f"SlurmctldPort={ctld_port}", f"SlurmdPort={slurmd_port}",
            f"SrunPortRange={srun_ports.start}-{srun_ports.stop - 1}",
            "ReturnToService=2", "MpiDefault=none", "MailProg=/bin/true",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "CommunicationParameters=NoCtldInAddrAny,NoInAddrAny",
            f"NodeName=localhost NodeAddr=127.0.0.1 CPUs={os.cpu_count() or 1} State=UNKNOWN",
            "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP"
            " OverSubscribe=FORCE:16",
            "",
        ]))

    def _spawn(self, name: str, argv: list[str]) -> Child:
        child = Child(name)
        transport = self.reactor.spawnProcess(child, argv[0], argv, env=self.env,
                                              path=str(self.root))
        child.pid = transport.pid
        self.children.append(child)
        return child

    async def _run(self, timeout: float) -> None:
        root, conf = self.root, str(self.conf)
        munged = self._spawn("munged", [
            "/usr/sbin/munged", "-F", f"--socket={root}/run/munge.sock",
            f"--key-file={root}/key/munge.key", f"--pid-file={root}/run/munged.pid",
            f"--log-file={root}/run/munged.log", f"--seed-file={root}/run/munged.seed"])
        await munged.logged("Created socket").addTimeout(timeout, self.reactor)
        ctld = self._spawn("slurmctld", ["/usr/sbin/slurmctld", "-D", "-i", "-f", conf])
        await ctld.logged("Running as primary controller").addTimeout(timeout, self.reactor)
        slurmd = self._spawn("slurmd", ["/usr/sbin/slurmd", "-D", "-N", "localhost", "-f", conf])
        await slurmd.logged("slurmd started on").addTimeout(timeout, self.reactor)
        await poll(self.reactor, self._idle, timeout)

    async def run(self, *argv: str) -> str:
        """Run a Slurm command (``squeue``, ``scancel``...) on this cluster: its stdout."""
        from twisted.internet.utils import getProcessOutputAndValue

        path = shutil.which(argv[0], path=self.env["PATH"]) or argv[0]
        out, err, code = await getProcessOutputAndValue(path, argv[1:], env=self.env,
                                                        reactor=self.reactor)
        if code != 0:
            raise RuntimeError(f"{' '.join(argv)}: exit {code}: {err.decode()[-300:]}")
        return str(out.decode())

    async def _idle(self) -> bool:
        return (await self.run("sinfo", "-h", "-o", "%t")).strip() == "idle"

    async def jobs(self) -> list[SlurmJob]:
        """Every job ``squeue`` shows (pending, running or completing)."""
        out = await self.run("squeue", "-h", "-o", "%i|%j|%T|%l")
        return [SlurmJob(line) for line in out.splitlines() if line.strip()]

    async def named(self, name: str) -> list[SlurmJob]:
        """The jobs ``squeue`` shows named ``name``."""
        return [job for job in await self.jobs() if job.name == name]

    async def stop(self, timeout: float = 30.0) -> None:
        """
        Cancel every job left, stop the daemons (by pid: SIGTERM, and
        SIGKILL for one still there after ``timeout``) and remove the
        directory, whatever fails on the way.
        """
        running = {child.name for child in self.children if not child.ended.called}
        pids = []
        try:
            if {"slurmctld", "slurmd"} <= running:
                try:
                    await self.run("scancel", "--full", "--user=root")
                    await poll(self.reactor, lambda: self._drained(), timeout)
                except (RuntimeError, TimeoutError):
                    pass  # stopped below anyway
            for child in reversed(self.children):
                if child.pid is not None and not child.ended.called:
                    os.kill(child.pid, signal.SIGTERM)
                    pids.append(child.pid)
            await wait_gone(self.reactor, pids, timeout)
        except BaseException:
            await kill_left(self.reactor, [child.pid for child in self.children
                                           if child.pid is not None and not child.ended.called])
            raise
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    async def _drained(self) -> bool:
        return not await self.jobs()
