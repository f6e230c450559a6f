"""
The rows that start as a user starts (issue 26):

- each daemon started with N workers declared in its config (this one's
  ``[job:NAME]`` sections, circus's watchers and supervisord's programs,
  all started with the daemon), timed from its spawn until all N answer,
  with the daemon's own CPU (``utime + stime`` of its process, from
  ``/proc``) and RSS at that moment: everything it spent from its start;
- N clients at once against the running daemon, each on its own
  connection asking for a job and waiting until it is ready (``POST
  /jobs``, then ``GET /jobs/{guid}?wait=ready``), with the daemon's CPU
  over that time;
- what a warm template holds (RSS and USS).
"""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from managers import COLD, PYTHON, Proactor, _bare, _env
from probe import cpu_seconds, rss_kib, uss_kib, wait_answering, wait_closed

__all__ = ["DECLARED_KINDS", "clients", "declared", "templates"]

#: The daemons started with their workers declared, as their samples name them.
#: ``twistd`` is the daemon under ``twistd proactor`` rather than ``proactord``.
DECLARED_KINDS = ("proactor", "twistd", "circus", "supervisord")

Samples = dict[str, list[float]]


def _now() -> float:
    return time.perf_counter()


def _proactor(work: Path, ports: list[int], control: int, command: str = "proactord"
              ) -> list[str]:
    """
    ``proactord -n proactor`` (as ``make run``; or ``command``: ``twistd``) with a cold
    demo worker declared for each of ``ports`` (in a row).
    """
    jobs = "".join(f"\n[job:j{n:03d}]\nmodule = {COLD}\n" for n in range(len(ports)))
    config = work / "proactor.cfg"
    config.write_text(textwrap.dedent(f"""
        [proactor]
        listen_port = {control}
        child_port_min = {ports[0]}
        child_port_max = {ports[-1]}
        ready_timeout = 60

        [{COLD}]
        greeting = hello
        """) + jobs)
    program = str(Path(PYTHON).parent / command)
    return [program, "--pidfile=", "-n", "--logfile", str(work / "proactor.log"), "proactor",
            "--config", str(config), "--state-dir", str(work / "state")]


def _circus(work: Path, ports: list[int], control: int) -> list[str]:
    """circusd with one watcher per port, each started with it (``check_delay`` as bench.py's)."""
    lines = ["[circus]", f"endpoint = tcp://127.0.0.1:{control}",
             f"pubsub_endpoint = tcp://127.0.0.1:{control + 1}",
             "statsd = False", "check_delay = 0.1", ""]
    for port in ports:
        lines += [f"[watcher:w{port}]", f"cmd = {' '.join(_bare(port))}", "numprocesses = 1",
                  "copy_env = True", "graceful_timeout = 5", ""]
    config = work / "circus.ini"
    config.write_text("\n".join(lines))
    return [str(Path(PYTHON).parent / "circusd"), str(config)]


def _supervisord(work: Path, ports: list[int], control: int) -> list[str]:
    """supervisord with one program per port, each started with it."""
    lines = ["[supervisord]", "nodaemon = true", f"logfile = {work / 'supervisord.log'}",
             f"pidfile = {work / 'supervisord.pid'}", f"childlogdir = {work}",
             "[inet_http_server]", f"port = 127.0.0.1:{control}",
             "[rpcinterface:supervisor]",
             "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface"]
    for port in ports:
        lines += [f"[program:w{port}]", f"command = {' '.join(_bare(port))}",
                  "autostart = true", "autorestart = true", "startsecs = 0",
                  "stopwaitsecs = 5", "stdout_logfile = NONE", "stderr_logfile = NONE"]
    config = work / "supervisord.conf"
    config.write_text("\n".join(lines) + "\n")
    return [str(Path(PYTHON).parent / "supervisord"), "-c", str(config)]


def declared(kind: str, work: Path, ports: list[int], control: int, samples: Samples) -> None:
    """
    Start daemon ``kind`` (of :data:`DECLARED_KINDS`, its control on port
    ``control`` and the next) with a worker declared in its config for each
    of ``ports``; when all answer, note the time since its spawn, its CPU and
    RSS; stop it (SIGTERM) and return once its workers are gone.
    """
    work = work / f"declared-{kind}"
    work.mkdir(parents=True, exist_ok=True)
    make = {"proactor": _proactor, "circus": _circus, "supervisord": _supervisord,
            "twistd": lambda work, ports, control: _proactor(work, ports, control, "twistd")
            }[kind]
    argv = make(work, ports, control)
    start = _now()
    process = subprocess.Popen(argv, env=_env(), stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=work)
    try:
        seen = wait_answering(ports, 180, 0.02)
        samples[f"start {kind}"].append(max(seen.values()) - start)
        samples[f"start cpu {kind}"].append(cpu_seconds(process.pid))
        samples[f"start rss {kind}"].append(rss_kib(process.pid))
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(30)
        wait_closed(ports, 120)  # a hundred workers may take a while to go on a busy machine


def _launch_and_wait(ours: Proactor, module: str) -> tuple[int, str]:
    """One client: ask for a job of ``module``, wait until it is ready; its (port, guid)."""
    conn = http.client.HTTPConnection("127.0.0.1", ours.api_port, timeout=90)
    auth = {"Authorization": f"Bearer {ours.token}"}
    try:
        conn.request("POST", "/jobs", body=json.dumps({"module": module}).encode(), headers=auth)
        answer = conn.getresponse()
        job = json.loads(answer.read())
        if answer.status != 201:
            raise RuntimeError(f"launch refused: {answer.status} {job}")
        conn.request("GET", f"/jobs/{job['guid']}?wait=ready&timeout=60", headers=auth)
        answer = conn.getresponse()
        state = json.loads(answer.read())
        if answer.status != 200 or state.get("state") != "ready":
            raise RuntimeError(f"job {job['guid']} not ready: {answer.status} {state}")
        return int(job["port"]), str(job["guid"])
    finally:
        conn.close()


def clients(ours: Proactor, samples: Samples, key: str, count: int, module: str) -> None:
    """
    ``count`` clients at once against the running daemon, each launching a
    job of ``module`` and waiting for it to be ready: the time until the
    last is answered, and the daemon's CPU meanwhile. The jobs are stopped.
    """
    assert ours.pid is not None
    before = cpu_seconds(ours.pid)
    start = _now()
    with ThreadPoolExecutor(count) as pool:
        launched = list(pool.map(lambda _: _launch_and_wait(ours, module), range(count)))
    samples[key].append(_now() - start)
    samples[f"cpu {key}"].append(cpu_seconds(ours.pid) - before)
    ours.jobs.update(launched)
    ours.stop([port for port, _ in launched])


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def templates(ours: Proactor, samples: Samples) -> None:
    """RSS and USS of each warm template the daemon runs (a child running the template)."""
    assert ours.pid is not None
    for child in _children(ours.pid):
        try:
            argv = Path(f"/proc/{child}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        if b"launch.warm.template" in argv:
            samples["rss template"].append(rss_kib(child))
            samples["uss template"].append(uss_kib(child))
