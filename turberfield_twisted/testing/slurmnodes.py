"""
A three-node Slurm cluster for tests, on one host, with a real network
hop between its parts: one ``slurmctld`` and three ``slurmd -N NAME``,
each node in a network namespace of its own and the controller in a
"head" namespace (where a test runs the daemon too: :attr:`SlurmNodes.head_argv`),
all joined by a bridge the cluster makes. Nothing of it binds outside
those namespaces but the bridge's own address, and :meth:`SlurmNodes.stop`
(also run when :meth:`SlurmNodes.start` fails) removes every namespace,
link and file it made.

The subnet is ``10.77.K.0/24``: the bridge ``.1``, the head ``.2``, node
``i`` ``.(10 + i)``; K is the first that no interface here has and whose
lock file this process can hold (``flock``), so that runs side by side
never share one, and every name (namespaces, links) carries K
(``tfsK``...). ``munged`` runs on this host (its socket is a file, which
every namespace reaches). The processes are entered into their namespace
with ``nsenter --net`` (``ip netns exec`` would mount a sysfs without the
cgroup tree ``slurmd`` needs).

A test makes a node fail with :meth:`SlurmNodes.kill_node` (SIGKILL to
every process of its namespace: ``slurmd``, its ``slurmstepd``\\ s and their
tasks), cuts its link (:meth:`SlurmNodes.cut`, the bridge's end of its
veth pair down, the worker living on) and mends it (:meth:`SlurmNodes.mend`),
and brings a killed node back (:meth:`SlurmNodes.revive`).
Slurm places each job on the least loaded node (``CR_LLN``), so jobs
started one after another spread over the nodes. ``SlurmdTimeout`` is
:data:`SLURMD_TIMEOUT` seconds: Slurm declares a
silent node down, and tells the ``srun`` of each of its steps, within a
few times that.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Any

import attrs
from twisted.internet import defer

from turberfield_twisted.testing.netns import PATH, Bridge, Member, Subnet
from turberfield_twisted.testing.procs import Child, kill_left, wait_gone
from turberfield_twisted.testing.slurmcluster import SlurmJob, poll, slurm_missing

__all__ = ["NODES", "SLURMD_TIMEOUT", "SlurmNode", "SlurmNodes", "nodes_missing"]

#: How many nodes a cluster has.
NODES = 3
#: Seconds of silence after which Slurm sets a node down (``SlurmdTimeout``).
SLURMD_TIMEOUT = 5
#: ``sinfo``'s states (``%t``) of a node that takes jobs.
_UP = frozenset({"idle", "mix", "alloc"})


def nodes_missing() -> str | None:
    """None if a multi-node cluster can be made here (Slurm, munge, ``ip``, ``nsenter``,
    network namespaces); else why not."""
    reason = slurm_missing()
    if reason is not None:
        return reason
    for tool in ("ip", "nsenter"):
        if shutil.which(tool, path=PATH) is None:
            return f"no {tool} for network namespaces: apt-get install iproute2 util-linux"
    return None


@attrs.define(eq=False)
class SlurmNode:
    """One node: Slurm's ``name``, its namespace, address, ``slurmd`` port and link."""

    name: str
    netns: str
    addr: str
    port: int
    link: str
    slurmd: Child | None = None


class SlurmNodes:
    """
    The cluster in ``root`` (made 0755 for ``munged``'s checks), on the
    ports of ``ports`` (``slurmctld``'s, one per node, then ``srun``'s):
    ``nodes``, ``head`` (the head namespace), ``head_addr``; ``env`` is
    what a client needs (``SLURM_CONF``); a client may run anywhere on this
    host (``slurmctld`` listens on ``head_addr``).
    """

    def __init__(self, reactor: Any, root: Path, ports: range, net: Subnet):
        self.reactor = reactor
        self.root = root
        self.net = net
        self.conf = root / "slurm.conf"
        self.env = {"PATH": PATH, "LANG": "C.UTF-8", "SLURM_CONF": str(self.conf)}
        self.head = net.head
        self.head_addr = net.addr(2)
        self.ctld_port = ports[0]
        self.nodes = [SlurmNode(f"node{i}", f"{net.prefix}n{i}", net.addr(10 + i), ports[i],
                                f"{net.prefix}v{i}") for i in range(1, NODES + 1)]
        self.srun_ports = range(ports[NODES + 1], ports[-1] + 1)
        self.network = Bridge(net, [Member(self.head, f"{net.prefix}vh", f"{net.prefix}eh",
                                           self.head_addr),
                                    *(Member(node.netns, node.link, f"{net.prefix}e{i}",
                                             node.addr) for i, node in enumerate(self.nodes, 1))])
        self.children: list[Child] = []
        self.ctld: Child | None = None

    @property
    def head_argv(self) -> list[str]:
        """What runs a command in the head namespace: put it before the command's argv."""
        return ["/usr/bin/nsenter", f"--net=/run/netns/{self.head}"]

    def node(self, name: str) -> SlurmNode:
        """The node named ``name``."""
        return next(node for node in self.nodes if node.name == name)

    @classmethod
    async def start(cls, reactor: Any, ports: range, timeout: float = 60.0) -> SlurmNodes:
        """
        Make the network and start the cluster on ``ports`` (at least
        ``NODES + 2``: the last ones are ``srun``'s) in a new temporary
        directory; return it once every node is idle. On failure, everything
        made is removed before the error is raised.
        """
        net = Subnet.take()
        root = Path(tempfile.mkdtemp(prefix="tf-slurmnodes-", dir="/tmp"))
        root.chmod(0o755)
        cluster = cls(reactor, root, ports, net)
        try:
            cluster.network.unmake()  # what a run that held K before and died may have left
            cluster.network.make()
            cluster._write()
            await cluster._run(timeout)
        except BaseException:
            await cluster.stop()
            raise
        return cluster

    # -- the network -------------------------------------------------------

    def cut(self, name: str) -> None:
        """Cut node ``name`` off: the bridge's end of its link down (its processes live on)."""
        self.network.set_link(self.node(name).link, "down")

    def mend(self, name: str) -> None:
        """Bring node ``name``'s link back up."""
        self.network.set_link(self.node(name).link, "up")

    # -- the daemons -------------------------------------------------------

    def _write(self) -> None:
        root = self.root
        for name in ("state", "spool", "run"):
            (root / name).mkdir(mode=0o755)
        for node in self.nodes:
            (root / "spool" / node.name).mkdir(mode=0o755)
        keys = root / "key"
        keys.mkdir(mode=0o700)
        key = keys / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        cpus = os.cpu_count() or 1
        self.conf.write_text("\n".join([
            f"ClusterName=tfnodes{self.net.k}", f"SlurmctldHost=localhost({self.head_addr})",
            "AuthType=auth/munge", "CredType=cred/munge",
            f"AuthInfo=socket={root}/run/munge.sock",
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
            "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core,CR_LLN",
            "SlurmUser=root", "SlurmdUser=root",
            f"StateSaveLocation={root}/state", f"SlurmdSpoolDir={root}/spool/%n",
            f"SlurmctldPidFile={root}/run/slurmctld.pid",
            f"SlurmdPidFile={root}/run/slurmd-%n.pid",
            f"SlurmctldPort={self.ctld_port}",
            f"SrunPortRange={self.srun_ports.start}-{self.srun_ports.stop - 1}",
            f"SlurmdTimeout={SLURMD_TIMEOUT}", "MessageTimeout=2",
            "ReturnToService=2", "MpiDefault=none", "MailProg=/bin/true",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            *(f"NodeName={node.name} NodeAddr={node.addr} Port={node.port} CPUs={cpus}"
              " State=UNKNOWN" for node in self.nodes),
            "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP"
            " OverSubscribe=FORCE:16",
            "",
        ]))

    def _spawn(self, name: str, argv: list[str], netns: str | None = None,
               detached: bool = False) -> Child:
        if netns is not None:
            argv = ["/usr/bin/nsenter", f"--net=/run/netns/{netns}", *argv]
        if detached:  # not this process's child: its pid is set once it has started
            argv = ["/usr/bin/setsid", "-f", *argv]
        child = Child(name)
        transport = self.reactor.spawnProcess(child, argv[0], argv, env=self.env,
                                              path=str(self.root))
        child.pid = transport.pid
        self.children.append(child)
        return child

    def _slurmd(self, node: SlurmNode, detached: bool = False) -> Child:
        node.slurmd = self._spawn(f"slurmd {node.name}", [
            "/usr/sbin/slurmd", "-D", "-N", node.name, "-f", str(self.conf)], node.netns,
            detached)
        return node.slurmd

    async def _run(self, timeout: float) -> None:
        root = self.root
        munged = self._spawn("munged", [
            "/usr/sbin/munged", "-F", f"--socket={root}/run/munge.sock",
            f"--key-file={root}/key/munge.key", f"--pid-file={root}/run/munged.pid",
            f"--log-file={root}/run/munged.log", f"--seed-file={root}/run/munged.seed"])
        await munged.logged("Created socket").addTimeout(timeout, self.reactor)
        self.ctld = self._spawn("slurmctld", ["/usr/sbin/slurmctld", "-D", "-i", "-f",
                                              str(self.conf)], self.head)
        await self.ctld.logged("Running as primary controller").addTimeout(timeout,
                                                                            self.reactor)
        started = [self._slurmd(node).logged("slurmd started on") for node in self.nodes]
        for d in started:
            await d.addTimeout(timeout, self.reactor)
        await poll(self.reactor, self.all_idle, timeout)

    # -- asking Slurm ------------------------------------------------------

    async def run(self, *argv: str) -> str:
        """Run a Slurm command (``squeue``, ``scontrol``...) on this cluster: its stdout."""
        from twisted.internet.utils import getProcessOutputAndValue

        path = shutil.which(argv[0], path=PATH) or argv[0]
        out, err, code = await getProcessOutputAndValue(path, argv[1:], env=self.env,
                                                        reactor=self.reactor)
        if code != 0:
            raise RuntimeError(f"{' '.join(argv)}: exit {code}: {err.decode()[-300:]}")
        return str(out.decode())

    async def states(self) -> dict[str, str]:
        """Each node's state as ``sinfo`` says it (``idle``, ``mix``, ``down*``...)."""
        out = await self.run("sinfo", "-h", "-N", "-o", "%N|%t")
        return dict(line.split("|", 1) for line in out.split() if "|" in line)

    async def all_idle(self) -> bool:
        """Whether every node is idle."""
        states = await self.states()
        return len(states) == NODES and set(states.values()) == {"idle"}

    async def up(self, name: str) -> bool:
        """Whether node ``name`` takes jobs (idle, or running some)."""
        return (await self.states()).get(name) in _UP

    async def all_up(self) -> bool:
        """Whether every node takes jobs (idle, or running some)."""
        states = await self.states()
        return len(states) == NODES and set(states.values()) <= _UP

    async def jobs(self) -> list[SlurmJob]:
        """Every job ``squeue`` shows (pending, running or completing), with its node."""
        out = await self.run("squeue", "-h", "-o", "%i|%j|%T|%l|%N")
        return [SlurmJob(line) for line in out.splitlines() if line.strip()]

    async def named(self, name: str) -> list[SlurmJob]:
        """The jobs ``squeue`` shows named ``name``."""
        return [job for job in await self.jobs() if job.name == name]

    async def steps(self, name: str) -> list[str]:
        """The steps (``JOBID.STEP``) of the jobs named ``name`` that ``squeue`` shows."""
        jobs = [job.id for job in await self.named(name)]
        if not jobs:
            return []
        out = await self.run("squeue", "-h", "--steps", f"--jobs={','.join(jobs)}", "-o", "%i")
        return out.split()

    # -- failures ----------------------------------------------------------

    def pids(self, name: str) -> list[int]:
        """Every process in node ``name``'s namespace: its slurmd, slurmstepds and tasks."""
        return self.network.pids(self.node(name).netns)

    async def kill_node(self, name: str) -> list[int]:
        """SIGKILL every process of node ``name``; return their pids once they are gone."""
        pids = self.pids(name)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        await wait_gone(self.reactor, pids, 30)
        return pids

    async def revive(self, name: str, timeout: float = 60.0) -> None:
        """
        Start node ``name``'s ``slurmd`` again (after :meth:`kill_node`); fire
        once it takes jobs. It is detached (``setsid -f``), so that it is not
        a process of the test that revives it, and stopped by pid with the rest.
        """
        node = self.node(name)
        slurmd = self._slurmd(node, detached=True)
        await slurmd.logged("slurmd started on").addTimeout(timeout, self.reactor)
        [slurmd.pid] = [pid for pid in self.pids(name)
                        if Path(f"/proc/{pid}/comm").read_text().strip() == "slurmd"]
        await poll(self.reactor, lambda: self.up(name), timeout)

    # -- the end -----------------------------------------------------------

    async def stop(self, timeout: float = 30.0, grace: float = 10.0) -> None:
        """
        Cancel every job left (waiting ``timeout`` seconds at most), stop
        the daemons (by pid: SIGTERM, and SIGKILL for one still there after
        ``grace`` seconds), remove the
        namespaces, links and directory, and let the subnet go, whatever
        fails on the way.
        """
        live = [child for child in self.children if not child.ended.called]
        try:
            if self.ctld is not None and not self.ctld.ended.called:
                with contextlib.suppress(RuntimeError, TimeoutError):
                    for node in self.nodes:
                        self.network.set_link(node.link, "up")
                    await self.run("scancel", "--full", "--user=root")
                    await poll(self.reactor, self._drained, timeout)
            pids = []
            for child in reversed(live):
                if child.pid is not None and not child.ended.called:
                    os.kill(child.pid, signal.SIGTERM)
                    pids.append(child.pid)
            try:
                await wait_gone(self.reactor, pids, grace)
            except defer.TimeoutError:  # a slurmd whose node was cut off may wait on a step
                await kill_left(self.reactor, pids, timeout)
        except BaseException:
            await kill_left(self.reactor, [child.pid for child in self.children
                                           if child.pid is not None and not child.ended.called])
            raise
        finally:
            try:
                self.network.unmake()
            finally:
                shutil.rmtree(self.root, ignore_errors=True)
                self.net.release()

    async def _drained(self) -> bool:
        return not await self.jobs()

