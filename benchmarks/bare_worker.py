"""
The floor, and the worker the peers supervise: a bare Klein app run as
this project's workers run, on the asyncio reactor, with none of its
runtime. ``GET /health`` and ``GET /`` answer at once; ``GET /pid`` gives
its pid.

``python -P bare_worker.py --port P``, or ``--fd N`` to serve a listening
socket it inherited as fd N (circus's ``$(circus.sockets.NAME)``). With
``--config-stdin`` it first reads a config from stdin to its end (as a
worker of the daemon does; the floor is run so): the peers give their
workers no config.
"""

import configparser
import os
import socket
import sys

from twisted.internet import asyncioreactor

asyncioreactor.install()

from klein import Klein  # noqa: E402  (the reactor first, as the runtime installs it)
from twisted.internet import endpoints, reactor  # noqa: E402
from twisted.web.server import Site  # noqa: E402

app = Klein()


@app.route("/health")
def health(request):
    request.setHeader("Content-Type", "application/json")
    return b'{"status": "ok"}'


@app.route("/")
def hello(request):
    request.setHeader("Content-Type", "application/json")
    return b'{"hello": "bare"}'


@app.route("/pid")
def pid(request):
    return str(os.getpid()).encode()


def site():
    made = Site(app.resource())
    made.noisy = False
    return made


if __name__ == "__main__":
    if "--config-stdin" in sys.argv:
        config = configparser.ConfigParser(interpolation=None)
        config.read_string(sys.stdin.read())
    if "--fd" in sys.argv:
        fd = int(sys.argv[sys.argv.index("--fd") + 1])
        endpoints.AdoptedStreamServerEndpoint(reactor, fd, socket.AF_INET).listen(site())
    else:
        port = int(sys.argv[sys.argv.index("--port") + 1])
        endpoints.TCP4ServerEndpoint(reactor, port, interface="127.0.0.1").listen(site())
    reactor.run()
