"""
The worker runtime: what turns a module holding a Klein app into a worker.

Importing this module installs the asyncio reactor (if no reactor is
installed yet), so a worker module takes ``Klein`` from here rather than
from ``klein``, which would install the default reactor first. It defines
its routes on a class that takes a :class:`WorkerContext` and hands the
class to :func:`run_worker`::

    from turberfield_twisted.worker import Klein, WorkerContext, run_worker

    class Hello:
        app = Klein()

        def __init__(self, ctx: WorkerContext):
            self.ctx = ctx

        @app.route("/")
        def hello(self, request):
            return self.ctx.guid

    if __name__ == "__main__":
        run_worker(Hello)

The runtime reads ``--guid`` and ``--port``, reads the config from stdin,
serves the app on the section's ``listen_addr`` (default 127.0.0.1) and
port, adds ``GET /health``, tells the initiator it listens (a line on fd
4, if that is a pipe; else, as on a cluster node, ``POST
/jobs/{guid}/listening``), drains and exits on SIGTERM (:mod:`.drain`: it
stops listening, closes idle keep-alive connections, answers what it
holds with ``Connection: close``), and exits when its lifeline (fd 3,
held by the initiator) reaches EOF, after it has ended the rest of its
process group, what it started (SIGTERM, then SIGKILL after
:data:`~.group.GRACE` seconds: :func:`~.group.end_group`), which no one
else would now. An instance of a service also serves the service's
shared socket, handed down as systemd's socket activation does
(``LISTEN_FDS``, ``LISTEN_PID``: fds 3 on; its lifeline and ready fd
follow them). Bound beyond loopback, every
route but ``GET /health`` needs this job's token (the relay sends it).
While it has a lifeline it waits for its config as long as it takes (the
initiator writes it at spawn, and a dead initiator ends the lifeline);
without one (run by hand, or under ``srun``) it gives its stdin
``config_timeout`` seconds.

``ctx.parent`` (a :class:`~.parent.ParentClient`) posts events to the
initiator and fetches this job's config from it; its HTTP client (treq) is
loaded on its first request, so a worker that never calls it never loads
it. The initiator sends a changed config to ``POST /_proactor/config``
(with the job's token); the runtime takes it and calls the app object's
``on_config(section)`` if it has one (``section`` as ``ctx.section``: this
job's keys, less secrets).

Exit codes: 0 stopped (SIGTERM or lifeline lost); 64 bad arguments; 65
malformed config or no section for the guid; 66 no config on stdin in time;
70 the app could not be built; 75 the port could not be bound.
"""

from __future__ import annotations

import gc

# What the imports below make (Klein, Twisted, the asyncio reactor: some
# 150,000 objects) lives as long as the worker: the collector's passes
# over them, again and again as they grow, cost a cold start about 50 ms
# of its 330 (15%, measured side by side). None runs until they are done;
# then they are frozen (out of the collector's reach, as the warm template
# freezes its own), so the first collection after is not one over all of
# them, still in its youngest generation. The price: what they left as
# garbage stays, about 0.6 MiB of a cold worker's 53.
_COLLECTING = gc.isenabled()
gc.disable()

# Before klein, whose import would install the default reactor.
from turberfield_twisted.worker import _asyncio  # noqa: F401

# isort: split

import argparse
import asyncio
import os
import signal
import stat
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from klein import Klein
from twisted.internet import endpoints
from twisted.internet.defer import Deferred
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger, globalLogBeginner, textFileLogObserver

from turberfield_twisted.contract import (
    EXIT_APP,
    EXIT_CONFIG,
    EXIT_NO_CONFIG,
    EXIT_PORT_IN_USE,
    EXIT_USAGE,
    is_loopback,
    lifeline_fd,
    reachable,
    ready_fd,
)
from turberfield_twisted.errors import ApiError, ConfigError, TransportError
from turberfield_twisted.worker.app import WorkerApp, WorkerContext
from turberfield_twisted.worker.drain import DrainingSite
from turberfield_twisted.worker.group import end_group
from turberfield_twisted.worker.parent import ParentClient
from turberfield_twisted.worker.proactor import Proactor
from turberfield_twisted.worker.sockets import NotASocket, adopt, take_inherited
from turberfield_twisted.worker.stdin import NoConfigStream
from turberfield_twisted.worker.upkeep import Upkeep

gc.freeze()
if _COLLECTING:  # as it was (if an import above failed, this process cannot run a worker)
    gc.enable()

__all__ = ["run_worker"]

log = Logger(namespace="turberfield_twisted.worker")


class _Args(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        sys.stderr.write(f"{self.prog}: {message}\n")
        raise SystemExit(EXIT_USAGE)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse ``--guid G --port P`` (exit 64 on anything else)."""
    parser = _Args(description="A turberfield-twisted worker.")
    parser.add_argument("--guid", required=True, help="the job's guid: its config section")
    parser.add_argument("--port", required=True, type=int, help="the TCP port to serve on")
    return parser.parse_args(argv)


class _Runtime:
    """Reads the config, builds the :class:`WorkerApp`, serves it, and exits."""

    def __init__(self, reactor: Any, args: argparse.Namespace,
                 factory: Callable[..., Any] | Klein, config_timeout: float, sockets: int = 0):
        self.reactor = reactor
        self.args = args
        self.factory = factory
        self.config_timeout = config_timeout
        self.exit_code = 0
        self.proactor = Proactor(args, reactor=reactor)
        self.served = WorkerApp(args.guid, args.port, reactor, self.proactor)
        #: How many listening sockets it inherited (a service's instance: one).
        self.sockets = sockets
        self.lifeline = lifeline_fd(sockets)
        self.site: DrainingSite | None = None
        self.ports: list[IListeningPort] = []
        self.draining = False

    def fail(self, code: int, message: str, with_traceback: bool = False, **fields: Any) -> None:
        """Log ``message`` (with the exception handled, if ``with_traceback``); exit ``code``."""
        (log.failure if with_traceback else log.error)(message, guid=self.args.guid, **fields)
        self.exit_code = code
        if self.reactor.running:
            self.reactor.stop()

    def start(self) -> Deferred[None]:
        # Twisted's SIGTERM handler stops the reactor at once: this one drains first.
        signal.signal(signal.SIGTERM, lambda *_: self.reactor.callFromThread(self.drain))
        timeout = None if self._watch_lifeline() else self.config_timeout
        future = asyncio.ensure_future(
            self.proactor.read_config(sys.stdin, timeout), loop=self.proactor.loop
        )
        return Deferred.fromCoroutine(self._serve(Deferred.fromFuture(future)))

    async def _serve(self, config: Deferred[Any]) -> None:
        guid = self.args.guid
        try:
            cfg = await config
        except TimeoutError:
            return self.fail(EXIT_NO_CONFIG, "job {guid}: no config on stdin within {timeout}s",
                             timeout=self.config_timeout)
        except NoConfigStream as exc:
            return self.fail(EXIT_NO_CONFIG, "job {guid}: {why}: the config must come on stdin,"
                                             " from a pipe or a file", why=str(exc))
        except ConfigError as exc:
            return self.fail(EXIT_CONFIG, "job {guid}: bad config: {reason}", reason=str(exc))
        if not cfg.sections() and not cfg.defaults():
            return self.fail(EXIT_NO_CONFIG, "job {guid}: stdin held no config: the config must"
                                             " come on stdin, from a pipe or a file")
        if not cfg.has_section(guid):
            return self.fail(EXIT_CONFIG, "job {guid}: the config has no section for this job")
        token = cfg.get(guid, "token", fallback="")
        try:
            self.served.build(self.factory, token, self._parent_client(cfg, token))
        except Exception:
            return self.fail(EXIT_APP, "job {guid}: the app could not be built",
                             with_traceback=True)
        addr = cfg.get(guid, "listen_addr", fallback="127.0.0.1")
        self.served.guarded = not is_loopback(addr)
        kind = endpoints.TCP6ServerEndpoint if ":" in addr else endpoints.TCP4ServerEndpoint
        parent = self.served.ctx.parent if self.served.ctx is not None else None
        upkeep = Upkeep(self.reactor, guid, cfg[guid], parent, self.drain)  # watchdog, recycling
        self.site = site = DrainingSite(upkeep.wrap(self.served.app.resource()))
        site.noisy = False
        site.log = lambda request: None  # type: ignore[method-assign]
        try:
            self.ports.extend(adopt(self.reactor, self.sockets, site))
        except NotASocket as exc:
            return self.fail(EXIT_APP, "job {guid}: {why}", why=str(exc))
        try:
            self.ports.append(await kind(self.reactor, self.args.port, interface=addr).listen(site))
        except CannotListenError as exc:
            return self.fail(EXIT_PORT_IN_USE, "job {guid}: cannot listen on {addr}:{port}: {why}",
                             addr=addr, port=self.args.port, why=str(exc.socketError))
        log.info("job {guid} listening on {addr}:{port}", guid=guid, addr=addr,
                 port=self.args.port, shared=self.sockets)
        if self.draining:  # asked to stop while it started listening
            self.draining = False
            self.drain()
            return None
        if not _say_ready(ready_fd(self.sockets), upkeep) and parent is not None:  # off this host
            try:
                await parent.listening(addr, self.args.port, os.environ)
            except (OSError, ApiError, TransportError) as exc:
                log.error("job {guid}: could not tell the initiator where it listens: {why}",
                          guid=guid, why=str(exc))
        return None

    def drain(self) -> None:
        """
        SIGTERM: stop listening (a service's other instances take what waits
        on the shared socket), drain the connections (see :mod:`.drain`),
        then stop. Before it serves, it stops at once.
        """
        if self.draining:
            return
        self.draining = True
        site = self.site
        if site is None:
            log.info("job {guid}: SIGTERM before serving: exiting", guid=self.args.guid)
            if self.reactor.running:
                self.reactor.stop()
            return
        if not self.ports:
            return  # still binding: _serve drains once it has
        log.info("job {guid}: SIGTERM: draining {count} connections", guid=self.args.guid,
                 count=len(site.channels))
        ports, self.ports = self.ports, []
        for port in ports:
            port.stopListening()
        site.drain().addCallback(self._drained)

    def _drained(self, _: None) -> None:
        log.info("job {guid}: drained: exiting", guid=self.args.guid)
        if self.reactor.running:
            self.reactor.stop()

    def _parent_client(self, cfg: Any, token: str) -> ParentClient | None:
        """
        A client of the initiator at ``parent_addr``:``parent_port`` (None
        if port 0), over TLS checked against ``parent_ca`` if ``parent_scheme`` is https.
        """
        guid = self.args.guid
        try:
            port = cfg.getint(guid, "parent_port", fallback=0)
        except ValueError:
            port = 0
        if not port:
            return None
        addr = cfg.get(guid, "parent_addr", fallback="") or "127.0.0.1"
        addr = reachable(addr)
        host = f"[{addr}]" if ":" in addr else addr
        # Over TLS, the daemon hands its CA (base64 PEM; empty: the system's store).
        scheme = "https" if cfg.get(guid, "parent_scheme", fallback="") == "https" else "http"
        ca = cfg.get(guid, "parent_ca", fallback="")
        ca_pem = _from_base64(ca) if ca else None
        # No http object: the client builds its own on its first request, so
        # only a worker that calls its initiator loads treq.
        parent = ParentClient(None, f"{scheme}://{host}:{port}", guid, token, self.reactor,
                              ca_pem=ca_pem)
        self.reactor.addSystemEventTrigger("before", "shutdown", parent.close)
        return parent

    def _watch_lifeline(self) -> bool:
        """Exit when the lifeline reaches EOF; False if there is none."""
        lifeline = self.lifeline
        if not _is_pipe(lifeline):
            return False
        os.set_inheritable(lifeline, False)
        loop = self.proactor.loop
        assert loop is not None

        def readable() -> None:
            try:
                data = os.read(lifeline, 1)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                loop.remove_reader(lifeline)
                log.warn("job {guid}: lifeline lost, the initiator is gone; ending its"
                         " process group and exiting", guid=self.args.guid)
                self.exit_code = 0
                ending = end_group(self.reactor)
                ending.addCallback(self._group_ended)
                ending.addErrback(lambda failure: log.failure(
                    "job {guid}: its process group could not be ended", failure,
                    guid=self.args.guid))
                ending.addBoth(lambda _: self.reactor.stop() if self.reactor.running else None)

        os.set_blocking(lifeline, False)
        loop.add_reader(lifeline, readable)
        return True

    def _group_ended(self, killed: list[int]) -> None:
        """Log the pids of its group that needed SIGKILL, if any."""
        if killed:
            log.warn("job {guid}: SIGKILL to {pids} of its process group, still there after"
                     " SIGTERM", guid=self.args.guid, pids=killed)


def _is_pipe(fd: int) -> bool:
    try:
        return stat.S_ISFIFO(os.fstat(fd).st_mode)
    except OSError:
        return False


def _say_ready(fd: int, upkeep: Upkeep) -> bool:
    """
    Tell the initiator this worker listens: one line on the ready fd
    ``fd``, then close it, or keep it for watchdog pings (:meth:`.Upkeep.say_ready`).
    False if there is no ready fd.
    """
    if not _is_pipe(fd):
        return False
    upkeep.say_ready(fd)
    return True


def _become_group_leader() -> None:
    """Lead a process group of our own if the launcher did not see to it."""
    try:
        if os.getpgid(0) != os.getpid():
            os.setsid()
    except OSError:
        pass


def run_worker(
    factory: Callable[[WorkerContext], Any] | Klein,
    argv: list[str] | None = None,
    config_timeout: float = 3,
) -> NoReturn:
    """
    Run a worker to the end and exit. ``factory(ctx)`` returns an object
    whose ``app`` is a Klein app (or a Klein app itself); a Klein app may be
    passed directly instead of a factory.
    """
    args = parse_args(argv)
    from twisted.internet import reactor as installed
    from twisted.internet.asyncioreactor import AsyncioSelectorReactor

    reactor: Any = installed

    if not isinstance(reactor, AsyncioSelectorReactor):
        sys.stderr.write("turberfield_twisted.worker must be imported before klein or treq\n")
        raise SystemExit(EXIT_APP)
    observer: Any = textFileLogObserver(sys.stderr)
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
    _become_group_leader()
    sockets = take_inherited(os.environ, os.getpid())
    if _is_pipe(ready_fd(sockets)):
        os.set_inheritable(ready_fd(sockets), False)  # what the app spawns does not hold it
    runtime = _Runtime(reactor, args, factory, config_timeout, sockets)
    # Everything imported so far lives as long as the worker: keep it out of
    # the collector's reach, so that no full collection over hundreds of
    # modules' objects falls between listening and the first answer.
    gc.freeze()
    reactor.callWhenRunning(runtime.start)
    reactor.run()
    raise SystemExit(runtime.exit_code)


def _from_base64(text: str) -> bytes:
    """The bytes of base64 ``text`` (the daemon's CA, as its config hands it)."""
    import base64

    return base64.b64decode(text)
