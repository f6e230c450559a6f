"""
The services rows of ``make bench`` (``bench.py`` runs them in its rounds):

- GET req/s through a service's shared address (2 instances), against
  circus with ``numprocesses = 2`` and a shared ``[socket:]``, and against
  one instance reached directly: the same bare Klein worker each time
  (``bare_worker.py``; under this daemon as ``bare_service.py``, which
  takes the socket by systemd's convention), the same load (``load.py``,
  10 kept-alive connections), interleaved;
- the services relay (``/services/NAME/proxy/``) against the address;
- a rollout of 4 warm instances (the demo worker, ``bench_hello``) while a
  client loop (``turberfield_twisted.testing.loadloop``) runs at a fixed
  rate: time from asking to done, and requests lost;
- a warm service scaled from 1 to 16: time from asking to every instance
  ready.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from managers import BARE, BARE_SERVICE, PYTHON, WARM, Proactor, _daemon, _env
from probe import wait_answering, wait_closed

HERE = Path(__file__).resolve().parent

#: The ports these rows bind, in :class:`ServiceRows`' order: the bare, warm and scaled
#: services' addresses, circus's socket, the direct bare worker, circus's control and pubsub.
SERVICE_PORTS = 7

Samples = dict[str, list[float]]


class CircusSocket:
    """
    circusd with one watcher of 2 bare workers sharing a ``[socket:]`` it binds
    on ``socket``, controlled on ``control`` (and its pubsub on the next port).
    """

    name = "circus socket"

    def __init__(self, work: Path, socket: int, control: int):
        self.work, self.socket, self.control = work, socket, control
        self.process: subprocess.Popen[bytes] | None = None
        self.client: Any = None

    def start(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        config = self.work / "circus.ini"
        config.write_text("\n".join([
            "[circus]", f"endpoint = tcp://127.0.0.1:{self.control}",
            f"pubsub_endpoint = tcp://127.0.0.1:{self.control + 1}", "statsd = False", "",
            "[socket:web]", "host = 127.0.0.1", f"port = {self.socket}", "",
            "[watcher:web]", f"cmd = {PYTHON} -P {BARE} --fd $(circus.sockets.web)",
            "numprocesses = 2", "use_sockets = True", "copy_env = True", "",
        ]))
        from circus.client import CircusClient

        self.client = CircusClient(endpoint=f"tcp://127.0.0.1:{self.control}", timeout=60)
        self.process = _daemon([str(Path(PYTHON).parent / "circusd"), str(config)], self.work,
                               lambda: self.client.call({"command": "list",
                                                         "properties": {}})["status"] == "ok")
        wait_answering([self.socket], 60, 0.01)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            try:
                self.client.call({"command": "quit", "properties": {"waiting": True}})
            except Exception:
                self.process.terminate()
            self.process.wait(60)
        if self.client is not None:
            self.client.stop()


def _load(url: str, seconds: float, headers: list[str] = ()) -> float:
    """Requests per second of ``load.py`` on ``url`` (10 connections, ``seconds``)."""
    done = subprocess.run([sys.executable, "-P", str(HERE / "load.py"), url, "10",
                           str(seconds), "400000", *headers],
                          capture_output=True, text=True, timeout=seconds + 60, check=True)
    result = json.loads(done.stdout)
    if result["errors"]:
        raise RuntimeError(f"load on {url}: {result}")
    return float(result["requests"] / result["seconds"])


class ServiceRows:
    """
    The services measures against ``ours`` (started), each round, on ``ports``
    (:data:`SERVICE_PORTS` of them, held by the caller).
    """

    def __init__(self, ours: Proactor, work: Path, ports: range):
        if len(ports) != SERVICE_PORTS:
            raise ValueError(f"the services rows take {SERVICE_PORTS} ports, not {len(ports)}")
        self.ours = ours
        (self.bare_address, self.warm_address, self.scale_address, circus_socket,
         self.direct_port, circus_control, _pubsub) = ports
        self.circus = CircusSocket(work / "circus-socket", circus_socket, circus_control)
        self.direct: subprocess.Popen[bytes] | None = None

    def _service(self, name: str, module: str, port: int, instances: int) -> None:
        status, answer = self.ours.call("POST", "/services", {
            "name": name, "module": module, "listen": str(port), "instances": instances})
        if status != 201:
            raise RuntimeError(f"service {name}: {status} {answer}")
        self._ready(name)

    def _ready(self, name: str, wait: str = "ready") -> dict[str, Any]:
        status, view = self.ours.call("GET", f"/services/{name}?wait={wait}&timeout=60")
        if status != 200 or (wait == "ready" and view["ready"] < view["instances"]):
            raise RuntimeError(f"service {name} not {wait}: {status} {view}")
        return view

    def start(self) -> None:
        self._service("bare", BARE_SERVICE, self.bare_address, 2)
        self._service("warm", WARM, self.warm_address, 4)
        self.circus.start()
        self.direct = subprocess.Popen([PYTHON, "-P", BARE, "--port", str(self.direct_port)],
                                       env=_env(), stdin=subprocess.DEVNULL)
        wait_answering([self.bare_address, self.warm_address, self.direct_port], 60, 0.01)

    def round(self, samples: Samples, number: int, seconds: float, repeats: int = 3) -> None:
        """
        One round of every measure: the throughput runs ``repeats`` times
        over, side by side, the order rotating each time.
        """
        auth = [f"Authorization: Bearer {self.ours.token}"]
        runs = [("service address", f"http://127.0.0.1:{self.bare_address}/", []),
                ("circus socket", f"http://127.0.0.1:{self.circus.socket}/", []),
                ("one direct", f"http://127.0.0.1:{self.direct_port}/", []),
                ("services relay", f"http://127.0.0.1:{self.ours.api_port}/services/bare/proxy/",
                 auth)]
        for repeat in range(repeats):
            turn = (number * repeats + repeat) % len(runs)
            for key, url, headers in runs[turn:] + runs[:turn]:
                samples[f"rps {key}"].append(_load(url, seconds, headers))
        self._rollout(samples)
        self._scale_up(samples)

    def _rollout(self, samples: Samples) -> None:
        """Roll the 4 warm instances out under a 300 req/s loop: time to done, requests lost."""
        loop = subprocess.Popen(
            [sys.executable, "-P", "-m", "turberfield_twisted.testing.loadloop", "127.0.0.1",
             str(self.warm_address), "--rate", "300", "--count", "60000", "--seconds", "120",
             "--until-eof", "--progress", "0"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=_env())
        assert loop.stdout is not None and loop.stdin is not None
        loop.stdout.readline()  # "started"
        time.sleep(0.5)  # the loop at its rate before the rollout begins
        start = time.perf_counter()
        status, answer = self.ours.call("POST", "/services/warm/rollout", {})
        if status != 202:
            raise RuntimeError(f"rollout: {status} {answer}")
        view = self._ready("warm", "rollout")
        took = time.perf_counter() - start
        time.sleep(0.5)  # and after it
        loop.stdin.close()
        result = json.loads(loop.stdout.read().splitlines()[-1])
        loop.wait(60)
        if view["rollout"]["state"] != "done":
            raise RuntimeError(f"rollout: {view['rollout']}")
        samples["rollout 4 warm"].append(took)
        samples["rollout lost"].append(float(result["failed"]))
        samples["rollout requests"].append(float(result["answered"]))

    def _scale_up(self, samples: Samples) -> None:
        """A warm service of 1 scaled to 16: time until all 16 are ready; then removed."""
        self._service("scale", WARM, self.scale_address, 1)
        start = time.perf_counter()
        status, answer = self.ours.call("PATCH", "/services/scale", {"instances": 16})
        if status != 200:
            raise RuntimeError(f"scale: {status} {answer}")
        self._ready("scale")
        samples["scale 1 to 16 warm"].append(time.perf_counter() - start)
        self.ours.call("DELETE", "/services/scale")
        wait_closed([self.scale_address])

    def close(self) -> None:
        for name in ("bare", "warm", "scale"):
            try:
                self.ours.call("DELETE", f"/services/{name}")
            except Exception:  # noqa: S110 (closing: the others must still go)
                pass
        self.circus.close()
        if self.direct is not None:
            self.direct.kill()
            self.direct.wait(30)


#: bench.py's rows of these measures (as its ROWS).
SERVICE_ROWS: list[tuple[str, str, str | None, str, str, float | None, str]] = [
    ("service address, 2 instances, GET req/s vs circus [socket:]", "rps service address",
     "rps circus socket", "ratio", "req/s", 1.0, "min"),
    ("service address, 2 instances, GET req/s vs one direct", "rps service address",
     "rps one direct", "ratio", "req/s", None, "min"),
    ("services relay GET req/s vs the service address", "rps services relay",
     "rps service address", "ratio", "req/s", None, "min"),
    ("rollout of 4 warm instances, ask -> done (ms)", "rollout 4 warm", None, "value", "ms",
     None, "max"),
    ("rollout of 4 warm instances: requests lost", "rollout lost", None, "value", "", 0.0,
     "max"),
    ("warm service scaled 1 -> 16, ask -> all ready (ms)", "scale 1 to 16 warm", None, "value",
     "ms", None, "max"),
]
