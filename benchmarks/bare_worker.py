"""
The floor, and the worker the peers supervise: a bare Klein app on the
default reactor, with no runtime and no config. ``GET /health`` and ``GET
/`` answer at once; ``GET /pid`` gives its pid.

``python -P bare_worker.py --port P``
"""

import os
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


if __name__ == "__main__":
    port = int(sys.argv[sys.argv.index("--port") + 1])
    site = Site(app.resource())
    site.noisy = False
    endpoints.TCP4ServerEndpoint(reactor, port, interface="127.0.0.1").listen(site)
    reactor.run()
