"""
The daemon's side of Slurm on a Clock, for the Slurm unit tests: an
Initiator and its API on a fake process reactor (:class:`World`), the demo
module on a Slurm launcher whose commands (``scancel``, ``squeue``,
``scontrol``) a fake :class:`Runner` answers.
"""

from __future__ import annotations

import json
from typing import Any

from treq.testing import StubTreq
from twisted.internet.defer import Deferred, succeed

from turberfield_twisted import Initiator
from turberfield_twisted.configtext import parse_config
from turberfield_twisted.http.api import ControlAPI
from turberfield_twisted.launch.local import LocalLauncher
from turberfield_twisted.launch.router import ModuleLaunchers
from turberfield_twisted.launch.slurm.launcher import SlurmLauncher
from turberfield_twisted.launch.slurm.nodes import NodeBook
from turberfield_twisted.launch.slurm.placement import Ran
from turberfield_twisted.launch.warm.launcher import WarmLauncher
from turberfield_twisted.testing.fakes import FakeProcessReactor

DEMO = "turberfield_twisted.demo.hello"
TOKEN = "admin-token-0123456789-abcdefghijklmnopqrstuvwxyz"
SLURM = "launcher = slurm\nslurm_args = --time=5 --qos=low\n"


def config(module: str = SLURM) -> Any:
    """An initiator ``init`` (child ports 27200-27209) and the demo's section, with ``module``."""
    return parse_config(f"[init]\nlisten_port = 0\nchild_port_min = 27200\n"
                        f"child_port_max = 27209\nready_timeout = 10\nstop_timeout = 5\n"
                        f"\n[{DEMO}]\ngreeting = hello\n{module}")


class Runner:
    """
    A fake runner of commands: records each scancel (``commands``) and squeue
    (``asked``); scancel exits 0 unless told (``answer``, or ``held``); squeue shows Slurm
    job JOBID as ``slurm[JOBID]`` (``NAME|NODE|STATE``), g1's running on node7
    unless told; scontrol shows each node's NodeAddr (``ADDRS``); sinfo shows ``nodes``.
    """

    def __init__(self) -> None:
        self.commands: list[list[str]] = []
        self.asked: list[list[str]] = []
        self.answer = Ran(0, "", "")
        #: What scancel answers with instead, if set (a Deferred the test fires).
        self.held: Deferred[Ran] | None = None
        self.slurm = {"12": "g1|node7|RUNNING", "13": "g1|node7|RUNNING"}
        #: What sinfo answers (``NODE STATE`` lines), and how often it was asked.
        self.nodes = ("node7 idle batch*\nnode8 mix batch*\nnode9 idle batch*\n"
                      "node6 down* batch*\nnode5 idle gpu\n")
        self.sinfo_asked = 0
        #: What the next sinfo answers with instead, if set (a Deferred the test fires).
        self.sinfo_held: Deferred[Ran] | None = None

    def __call__(self, argv: list[str]) -> Deferred[Ran]:
        if argv[0].endswith("scontrol"):
            addr = ADDRS.get(argv[-1])
            if addr is None:
                return succeed(Ran(1, "", f"Node {argv[-1]} not found\n"))
            return succeed(Ran(0, f"NodeName={argv[-1]} Arch=x86_64 NodeAddr={addr}"
                                  f" NodeHostName={argv[-1]}\n", ""))
        if argv[0].endswith("sinfo"):
            self.sinfo_asked += 1
            held, self.sinfo_held = self.sinfo_held, None
            return held if held is not None else succeed(Ran(0, self.nodes, ""))
        if argv[0].endswith("squeue"):
            self.asked.append(argv)
            [slurm_job] = [arg.split("=")[1] for arg in argv if arg.startswith("--jobs=")]
            if slurm_job not in self.slurm:
                return succeed(Ran(1, "", "slurm_load_jobs error: Invalid job id specified\n"))
            return succeed(Ran(0, self.slurm[slurm_job] + "\n", ""))
        self.commands.append(argv)
        return self.held if self.held is not None else succeed(self.answer)


#: What node names resolve to here.
HOSTS = {"node7": frozenset({"127.0.0.1"}), "node8": frozenset({"10.0.0.8"})}
#: Each node's NodeAddr, as Slurm has it.
ADDRS = {"node7": "127.0.0.1", "node8": "10.0.0.8", "node9": "node9.cluster"}


def resolve(name: str) -> Deferred[frozenset[str]]:
    return succeed(HOSTS.get(name, frozenset()))


class Response:
    def __init__(self, code: int, body: bytes):
        self.code, self._body = code, body

    def content(self) -> Deferred[bytes]:
        return succeed(self._body)


class Healthy:
    """Health checks: each URL asked is kept; every worker answers 200 in its own name."""

    def __init__(self, init: Any = None) -> None:
        self.asked: list[str] = []
        self.init = init

    def get(self, url: str, **kwargs: Any) -> Deferred[Response]:
        self.asked.append(url)
        port = int(url.split(":")[2].split("/")[0])
        [guid] = [job.guid for job in self.init.workers.values() if job.port == port]
        return succeed(Response(200, json.dumps({"status": "ok", "guid": guid}).encode()))


class World:
    """An Initiator and its API on a fake process reactor; the demo module runs on Slurm."""

    def __init__(self, module: str = SLURM):
        self.reactor = FakeProcessReactor()
        self.runner = Runner()
        self.http = Healthy()
        cfg = config(module)
        holder: list[Initiator] = []
        #: The node failures the launcher keeps and GET /slurm/nodes shows.
        self.nodes = NodeBook.of(self.reactor.seconds, lambda: holder[0].settings)
        cold = LocalLauncher(self.reactor, python="/py", setsid=None, process_groups=False)
        launchers = ModuleLaunchers(lambda: holder[0].settings, {
            "local": lambda: WarmLauncher(self.reactor, cold, lambda module: False),
            "slurm": lambda: SlurmLauncher(
                self.reactor, lambda m: holder[0].settings.module(m).slurm_args, python="/py",
                srun="/usr/bin/srun", scancel="/usr/bin/scancel", setsid=None, run=self.runner,
                squeue="/usr/bin/squeue", resolve=resolve, scontrol="/usr/bin/scontrol",
                nodes=self.nodes, spread=holder[0].slurm_spread, sinfo="/usr/bin/sinfo")})
        self.init = Initiator(None, guid="init", cfg=cfg, reactor=self.reactor,
                              launcher=launchers, http=self.http, slurm_nodes=self.nodes)
        holder.append(self.init)
        self.http.init = self.init
        self.api = ControlAPI(self.init, TOKEN, self.reactor)
        self.stub = StubTreq(self.api.app.resource())

    async def call(self, method: str, path: str, body: Any = None,
                   token: str = TOKEN) -> tuple[int, Any]:
        response = await self.stub.request(
            method, "http://127.0.0.1" + path, data=None if body is None else json.dumps(body),
            headers={b"Authorization": [b"Bearer " + token.encode()]}, timeout=5,
            reactor=self.reactor)
        content = await response.content()
        return response.code, json.loads(content) if content else None

    async def report(self, guid: str, **body: Any) -> tuple[int, Any]:
        job = self.init.job(guid)
        return await self.call("POST", f"/jobs/{guid}/listening",
                               {"host": "127.0.0.1", "port": job.port, "step": "12.0", **body},
                               job.token)
