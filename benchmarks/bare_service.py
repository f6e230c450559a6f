"""
The bare Klein worker of ``bare_worker.py`` as a service's instance under
this daemon, built on none of its runtime: how a server that speaks
systemd's socket activation takes the service's socket unchanged. Twisted's
``systemd:`` endpoint adopts the socket at fd 3 (``LISTEN_FDS``,
``LISTEN_PID``); the same app answers ``GET /health`` on ``--port`` too,
where the daemon checks that it is ready (and where its relay reaches it).
It ignores its config on stdin, its lifeline and its ready fd.

``python -P -m bare_service --guid G --port P`` (as the daemon runs it).
"""

import sys

from bare_worker import site
from twisted.internet import endpoints, reactor

if __name__ == "__main__":
    port = int(sys.argv[sys.argv.index("--port") + 1])
    served = site()
    endpoints.serverFromString(reactor, "systemd:domain=INET:index=0").listen(served)
    endpoints.TCP4ServerEndpoint(reactor, port, interface="127.0.0.1").listen(served)
    reactor.run()
