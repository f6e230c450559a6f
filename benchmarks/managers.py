"""
The process managers side by side, each behind the same few calls: start
the daemon, ask it for workers on some ports, stop them, kill one, and its
pid for memory. Each runs the bare Klein worker (``bare_worker.py``) on
127.0.0.1, except this project's daemon, which runs the demo worker
(``turberfield_twisted.demo.hello``, cold, or ``bench_hello``, warm)
through its runtime.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import xmlrpc.client
from pathlib import Path
from typing import Any

from probe import wait_closed, wait_gone

HERE = Path(__file__).resolve().parent
BARE = str(HERE / "bare_worker.py")
PYTHON = sys.executable
COLD, WARM = "turberfield_twisted.demo.hello", "bench_hello"
#: The bare worker as a service's instance (``bare_service.py``).
BARE_SERVICE = "bare_service"


def _env() -> dict[str, str]:
    """What every manager and worker runs with: no site noise, this interpreter's path."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1"}


def _bare(port: int) -> list[str]:
    return [PYTHON, "-P", BARE, "--port", str(port)]


def _daemon(argv: list[str], work: Path, up: Any) -> subprocess.Popen[bytes]:
    """Start ``argv`` quietly in ``work``; return once ``up()`` is true (30 s at most)."""
    process = subprocess.Popen(argv, env=_env(), stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=work)
    deadline = time.perf_counter() + 30
    while True:
        try:
            if up():
                return process
        except Exception:
            if time.perf_counter() > deadline or process.poll() is not None:
                raise
        time.sleep(0.1)


class Manager:
    """One process manager: ``name``; ``pid`` of its daemon once started."""

    name = "?"
    pid: int | None = None

    def start(self) -> None:
        raise NotImplementedError

    def launch(self, ports: list[int]) -> list[int]:
        """Ask for a worker on each of ``ports`` (or any, for ours); the ports used."""
        raise NotImplementedError

    def stop(self, ports: list[int]) -> None:
        """Stop the workers on ``ports``; return once none listens."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class Proactor(Manager):
    """This project's daemon (``proactord -n proactor``), driven over its control API."""

    def __init__(self, work: Path, api_port: int, low: int, high: int, module: str = COLD):
        self.name = "proactor" if module == COLD else "proactor warm"
        self.work = work
        self.api_port = api_port
        self.low, self.high = low, high
        self.module = module
        self.jobs: dict[int, str] = {}
        self.process: subprocess.Popen[bytes] | None = None
        self._conn: http.client.HTTPConnection | None = None
        self.token = ""

    def start(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        config = self.work / "proactor.cfg"
        config.write_text(textwrap.dedent(f"""
            [proactor]
            listen_port = {self.api_port}
            child_port_min = {self.low}
            child_port_max = {self.high}
            ready_timeout = 60
            pythonpath = {HERE}
            max_instances = 16

            [{COLD}]
            greeting = hello

            [{WARM}]
            greeting = hello
            warm = true

            [{BARE_SERVICE}]
            """))
        proactord = str(Path(PYTHON).parent / "proactord")  # as make run starts it
        self.process = subprocess.Popen(
            [proactord, "--pidfile=", "-n", "--logfile", str(self.work / "proactor.log"),
             "proactor", "--config", str(config), "--state-dir", str(self.work / "state")],
            env=_env(), stdin=subprocess.DEVNULL, cwd=self.work)
        self.pid = self.process.pid
        token_file = self.work / "state" / "admin.token"
        deadline = time.perf_counter() + 30
        while True:
            try:
                if token_file.exists() and self.call("GET", "/health")[0] == 200:
                    break
            except OSError:
                pass
            if time.perf_counter() > deadline:
                raise TimeoutError("the proactor daemon did not start")
            time.sleep(0.05)
        self.token = token_file.read_text().strip()

    def call(self, method: str, path: str, body: Any = None,
             timeout: float = 70) -> tuple[int, Any]:
        """One control API call on a kept-alive connection: (status, JSON answer)."""
        for attempt in range(2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection("127.0.0.1", self.api_port,
                                                        timeout=timeout)
            headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
            data = None if body is None else json.dumps(body).encode()
            try:
                self._conn.request(method, path, body=data, headers=headers)
                response = self._conn.getresponse()
                raw = response.read()
                return response.status, json.loads(raw) if raw else None
            except (http.client.HTTPException, OSError):
                self._conn.close()
                self._conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def launch(self, ports: list[int], module: str | None = None) -> list[int]:
        used = []
        for _ in ports:
            status, job = self.call("POST", "/jobs", {"module": module or self.module})
            if status != 201:
                raise RuntimeError(f"launch refused: {status} {job}")
            self.jobs[job["port"]] = job["guid"]
            used.append(job["port"])
        return used

    def pid_on(self, port: int) -> int:
        """The pid of the worker on ``port``, as the daemon knows it."""
        deadline = time.perf_counter() + 10
        while True:
            _, job = self.call("GET", f"/jobs/{self.jobs[port]}")
            if job.get("pid"):
                return int(job["pid"])
            if time.perf_counter() > deadline:
                raise TimeoutError("no pid")
            time.sleep(0.01)

    def stop(self, ports: list[int]) -> None:
        guids = [self.jobs.pop(port) for port in ports if port in self.jobs]
        for guid in guids:
            self.call("DELETE", f"/jobs/{guid}")
        for guid in guids:
            self.call("GET", f"/jobs/{guid}?wait=exited&timeout=30")
        for guid in guids:  # as a client that is done with them: no ended job is kept
            self.call("POST", f"/jobs/{guid}/forget")
        wait_closed(ports)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(60)


class _Peer(Manager):
    """A peer daemon configured with one worker per port of ``ports``, controlled on
    ``control``, its files in ``work``."""

    def __init__(self, work: Path, ports: list[int], control: int):
        self.work = work
        self.ports = ports
        self.control = control
        self.process: subprocess.Popen[bytes] | None = None
        work.mkdir(parents=True, exist_ok=True)


class Circus(_Peer):
    """circusd with one watcher per port (started by name), check_delay 0.1."""

    name = "circus"
    client: Any = None

    def start(self) -> None:
        lines = [
            "[circus]", f"endpoint = tcp://127.0.0.1:{self.control}",
            f"pubsub_endpoint = tcp://127.0.0.1:{self.control + 1}",
            "statsd = False", "check_delay = 0.1", "",
        ]
        for port in self.ports:
            lines += [f"[watcher:w{port}]", f"cmd = {' '.join(_bare(port))}",
                      "numprocesses = 1", "autostart = False", "copy_env = True",
                      "graceful_timeout = 5", ""]
        config = self.work / "circus.ini"
        config.write_text("\n".join(lines))
        from circus.client import CircusClient

        self.client = CircusClient(endpoint=f"tcp://127.0.0.1:{self.control}", timeout=60)
        self.process = _daemon(
            [str(Path(PYTHON).parent / "circusd"), str(config)], self.work,
            lambda: self.client.call({"command": "list", "properties": {}})["status"] == "ok")
        self.pid = self.process.pid

    def _call(self, command: str, **properties: Any) -> None:
        """One command; asked again while circus is busy with the last one (bounded)."""
        deadline = time.perf_counter() + 60
        while True:
            answer = self.client.call({"command": command, "properties": properties})
            if answer.get("status") == "ok":
                return
            if "already running" not in str(answer.get("reason")) \
                    or time.perf_counter() > deadline:
                raise RuntimeError(f"circus {command}: {answer}")
            time.sleep(0.002)

    def launch(self, ports: list[int]) -> list[int]:
        for port in ports:
            self._call("start", name=f"w{port}")
        return ports

    def stop(self, ports: list[int]) -> None:
        for port in ports:
            self._call("stop", name=f"w{port}", waiting=True)
        wait_closed(ports)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            try:
                self.client.call({"command": "quit", "properties": {"waiting": True}})
            except Exception:
                self.process.terminate()
            self.process.wait(60)
        if self.client is not None:
            self.client.stop()


class Supervisor(_Peer):
    """supervisord with one program per port (autostart off), over XML-RPC."""

    name = "supervisord"
    rpc: Any = None

    def start(self) -> None:
        lines = [
            "[supervisord]", "nodaemon = true", f"logfile = {self.work / 'supervisord.log'}",
            f"pidfile = {self.work / 'supervisord.pid'}", f"childlogdir = {self.work}",
            "[inet_http_server]", f"port = 127.0.0.1:{self.control}",
            "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        ]
        for port in self.ports:
            lines += [f"[program:w{port}]", f"command = {' '.join(_bare(port))}",
                      "autostart = false", "autorestart = true", "startsecs = 0",
                      "stopwaitsecs = 5", "stdout_logfile = NONE", "stderr_logfile = NONE"]
        config = self.work / "supervisord.conf"
        config.write_text("\n".join(lines) + "\n")
        self.rpc = xmlrpc.client.ServerProxy(f"http://127.0.0.1:{self.control}/RPC2")
        self.process = _daemon(
            [str(Path(PYTHON).parent / "supervisord"), "-c", str(config)], self.work,
            lambda: self.rpc.supervisor.getState()["statename"] == "RUNNING")
        self.pid = self.process.pid

    def launch(self, ports: list[int]) -> list[int]:
        for port in ports:
            self.rpc.supervisor.startProcess(f"w{port}", False)
        return ports

    def stop(self, ports: list[int]) -> None:
        for port in ports:
            try:
                self.rpc.supervisor.stopProcess(f"w{port}", True)
            except xmlrpc.client.Fault:
                pass  # not running
        wait_closed(ports)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(60)


class Procmon(Manager):
    """Twisted's ProcessMonitor (``procmon_run.py``): a new one for each set of workers."""

    name = "procmon"

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        pass  # it has no control API: launch starts it with its workers

    def launch(self, ports: list[int]) -> list[int]:
        self.process = subprocess.Popen(
            [PYTHON, "-P", str(HERE / "procmon_run.py"), *map(str, ports)], env=_env(),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.pid = self.process.pid
        return ports

    def stop(self, ports: list[int]) -> None:
        self.close()
        wait_closed(ports)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(60)
        self.process = None
        self.pid = None


#: The config the floor reads on stdin: a job's section, as a worker of the daemon gets.
FLOOR_CONFIG = b"[bare]\ngreeting = hello\nguid = bare\n"


class Floor(Manager):
    """
    No manager: the bare worker spawned directly (and killed) by the
    benchmark, its config on stdin.
    """

    name = "bare"

    def __init__(self) -> None:
        self.children: dict[int, subprocess.Popen[bytes]] = {}

    def start(self) -> None:
        pass

    def launch(self, ports: list[int]) -> list[int]:
        for port in ports:
            child = subprocess.Popen([*_bare(port), "--config-stdin"], env=_env(),
                                     stdin=subprocess.PIPE)
            assert child.stdin is not None
            child.stdin.write(FLOOR_CONFIG)  # as the daemon hands a worker its config
            child.stdin.close()
            self.children[port] = child
        return ports

    def stop(self, ports: list[int]) -> None:
        for port in ports:
            child = self.children.pop(port)
            child.kill()
            child.wait(30)
        wait_closed(ports)

    def close(self) -> None:
        self.stop(list(self.children))
        wait_gone([])
