"""
The floor, and the worker the peers supervise: a bare Klein app on the
default reactor, with no runtime and no config. ``GET /health`` and ``GET
/`` answer at once; ``GET /pid`` gives its pid.

``python -P bare_worker.py --port P``, or ``--fd N`` to serve a listening
socket it inherited as fd N (circus's ``$(circus.sockets.NAME)``).
"""

import os
import socket
import sys

from klein import Klein
from twisted.internet import endpoints, reactor
from twisted.web.server import Site

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
    if "--fd" in sys.argv:
        fd = int(sys.argv[sys.argv.index("--fd") + 1])
        endpoints.AdoptedStreamServerEndpoint(reactor, fd, socket.AF_INET).listen(site())
    else:
        port = int(sys.argv[sys.argv.index("--port") + 1])
        endpoints.TCP4ServerEndpoint(reactor, port, interface="127.0.0.1").listen(site())
    reactor.run()
