"""
A warm template: one process per module that has imported the worker
runtime, Klein and the module, and forks each new worker of it, as
``multiprocessing``'s forkserver does.

``python -P -m turberfield_twisted.launch.warm.template MODULE``, with fd 3 a Unix
``SOCK_SEQPACKET`` socket to the daemon (:mod:`turberfield_twisted.launch.warm.launcher`).
On it the template says ``{"ready": pid}`` (or ``{"refused": why}`` and
exits: a module that starts threads at import, or that keeps the reactor
it was imported with, can't be forked safely), then for each
``{"spawn": n, "guid": G, "port": P, "sockets": [NAME ...], "rlimits":
{"nofile": N, "cpu": S}}`` that comes with five fds and one more per
socket (the new worker's stdin, stdout, stderr, the listening sockets it
is handed, lifeline and ready fd) it forks a child and answers
``{"spawned": n, "pid": pid}``; it tells
``{"exit": pid, "code": c, "signal": s}`` for each child it reaps. After
``{"retire": true}`` it forks no more and exits once its last child has.
EOF on the socket (the daemon is gone) ends it at once; the workers have
their own lifelines.

The template never runs a reactor and never sees a job's config or
token: the reactor it imports the runtime with sits on a ``select()``
loop that holds no kernel object, so nothing of it is shared with a
child. Each child: leads a session of its own; closes the template's
reactor's fds; takes the fds as 0, 1, 2, 3 ... (with sockets, sets
``LISTEN_FDS``, ``LISTEN_PID`` and ``LISTEN_FDNAMES`` as systemd's socket
activation does: the sockets are fds 3 on); sets its rlimits (soft and
hard); builds a fresh asyncio loop and reactor (its fds above those);
reseeds ``random``; and runs the module as ``__main__`` with ``--guid G
--port P``, as ``python -m`` would, so that it reads its config from its
own stdin like a cold worker.
"""

from __future__ import annotations

import asyncio
import fcntl
import gc
import importlib
import json
import os
import random
import resource
import runpy
import select
import selectors
import signal
import socket
import sys
import traceback
from typing import TYPE_CHECKING, Any, NoReturn, cast

import attrs

from turberfield_twisted.contract import LISTEN_PID_ENV, socket_env
from turberfield_twisted.launch.slurm.guard import drain

if TYPE_CHECKING:
    from twisted.internet.asyncioreactor import AsyncioSelectorReactor

__all__ = ["CONTROL_FD", "MAX_MESSAGE", "MAX_SOCKETS", "RLIMIT_NAMES", "SPAWN_FDS", "main"]

#: The template's fd of its socket to the daemon.
CONTROL_FD = 3


#: How many fds a spawn request carries: stdin, stdout, stderr, lifeline, ready
#: (and one more per listening socket it hands down, up to :data:`MAX_SOCKETS`).
SPAWN_FDS = 5


#: The most listening sockets one worker is handed.
MAX_SOCKETS = 8


#: Largest message either side sends.
MAX_MESSAGE = 4096


#: The name of each rlimit a spawn request may set.
RLIMIT_NAMES = {resource.RLIMIT_NOFILE: "nofile", resource.RLIMIT_CPU: "cpu"}


def send(sock: socket.socket, message: dict[str, Any], fds: list[int] | None = None) -> None:
    """One message (JSON), with ``fds`` passed along (SCM_RIGHTS)."""
    data = json.dumps(message).encode("utf-8")
    if fds:
        socket.send_fds(sock, [data], fds)
    else:
        sock.send(data)


@attrs.frozen
class _Installed:
    """The template's reactor, and the asyncio loop it runs on."""

    reactor: AsyncioSelectorReactor
    loop: asyncio.AbstractEventLoop


def _template_reactor() -> _Installed:
    """
    Install the asyncio reactor on a loop whose selector is plain select():
    no kernel state. (Not with :func:`turberfield_twisted.worker._asyncio.install`:
    importing that module would first install one on a new, epoll, loop.)
    """
    from twisted.internet import asyncioreactor

    loop = asyncio.SelectorEventLoop(selectors.SelectSelector())
    asyncio.set_event_loop(loop)
    asyncioreactor.install(loop)
    from twisted.internet import reactor

    return _Installed(cast(asyncioreactor.AsyncioSelectorReactor, reactor), loop)


def _threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        import threading

        return threading.active_count()


def prepare(module: str) -> tuple[_Installed, str | None]:
    """
    Import the runtime and ``module`` under a template reactor; the reactor
    (and its loop), and why the module can't be warm (None if it can).
    """
    installed = _template_reactor()
    import turberfield_twisted.worker.runtime  # noqa: F401  (what every worker imports)

    try:
        loaded = importlib.import_module(module)
    except BaseException as exc:  # its own error is for the cold worker to show
        return installed, f"it could not be imported ({type(exc).__name__})"
    if _threads() > 1:
        return installed, "it starts threads when imported, and threads do not survive a fork"
    if any(value is installed.reactor for value in vars(loaded).values()):
        return installed, ("it keeps the reactor it was imported with; take ctx.reactor"
                           " instead")
    return installed, None


def _drop_reactor(old: _Installed) -> None:
    """
    Forget the template's reactor and close its fds (its waker's pipe, its
    loop's self-pipe). Done before the worker's fds take 0 to 4: closing
    these by number afterwards could close the lifeline or the ready fd.
    """
    import twisted.internet

    del sys.modules["twisted.internet.reactor"]
    if hasattr(twisted.internet, "reactor"):
        del twisted.internet.reactor
    if old.reactor.waker is not None:
        old.reactor.waker.connectionLost(None)
    old.loop.close()  # its select() selector and self-pipe are this process's own


def _take_fds(fds: list[int]) -> None:
    """Make ``fds`` the fds 0, 1 ... of this process (whatever numbers they came with)."""
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in fds]
    for fd in fds:
        os.close(fd)
    for target, fd in enumerate(high):
        os.dup2(fd, target)
        os.close(fd)


def _child(module: str, guid: str, port: int, fds: list[int], reactor: _Installed,
           closing: list[int], sockets: list[str], rlimits: dict[str, int]) -> NoReturn:
    """
    In the forked child: become a cold-looking worker of ``module`` (handed
    the listening sockets named ``sockets``) under ``rlimits`` (by name),
    run it, exit.
    """
    code: int = 70
    try:
        os.setsid()
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        for fd in closing:
            os.close(fd)
        _drop_reactor(reactor)
        _take_fds(fds)
        if sockets:
            os.environ.update({**socket_env(sockets), LISTEN_PID_ENV: str(os.getpid())})
        by_name = {name: which for which, name in RLIMIT_NAMES.items()}
        for name, value in rlimits.items():
            resource.setrlimit(by_name[name], (int(value), int(value)))
        # loaded already, with the runtime: no side effect
        from turberfield_twisted.worker._asyncio import install

        install()  # a fresh asyncio loop and reactor, their fds above the worker's
        random.seed()
        gc.enable()
        sys.argv = [module, "--guid", guid, "--port", str(port)]
        sys.modules.pop(module, None)  # it runs as __main__, as ``python -m`` runs it
        try:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: S110 (it is exiting: nothing else to do)
                pass
        os._exit(code)


def _status(wait: int) -> dict[str, int | None]:
    if os.WIFSIGNALED(wait):
        return {"code": None, "signal": os.WTERMSIG(wait)}
    return {"code": os.waitstatus_to_exitcode(wait), "signal": None}


def serve(sock: socket.socket, module: str, reactor: _Installed) -> None:
    """Fork a worker for each spawn request; report their exits; return when done."""
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    os.set_blocking(wake_r, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(wake_w)
    children: set[int] = set()
    retiring = False
    while not (retiring and not children):
        watched: list[socket.socket | int] = [sock, wake_r]
        readable, _, _ = select.select(watched, [], [])
        if wake_r in readable:
            drain(wake_r)
        while children:
            pid, wait = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            children.discard(pid)
            send(sock, {"exit": pid, **_status(wait)})
        if sock not in readable:
            continue
        data, fds, _, _ = socket.recv_fds(sock, MAX_MESSAGE, SPAWN_FDS + MAX_SOCKETS)
        if not data:
            return  # the daemon is gone
        message = json.loads(data)
        if message.get("retire"):
            retiring = True
            continue
        names = [str(name) for name in message.get("sockets") or []]
        if len(fds) != SPAWN_FDS + len(names) or retiring:
            for fd in fds:
                os.close(fd)
            send(sock, {"failed": message.get("spawn"), "error": "bad spawn request"})
            continue
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _child(module, str(message["guid"]), int(message["port"]), fds, reactor,
                   [sock.detach(), wake_r, wake_w], names, dict(message.get("rlimits") or {}))
        for fd in fds:
            os.close(fd)
        children.add(pid)
        send(sock, {"spawned": message["spawn"], "pid": pid})


def main(argv: list[str] | None = None) -> None:
    """``python -m turberfield_twisted.launch.warm.template MODULE``: prepare, say ready or
    refused, serve."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write("usage: python -m turberfield_twisted.launch.warm.template MODULE\n")
        raise SystemExit(64)
    module = args[0]
    fd = fcntl.fcntl(CONTROL_FD, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(CONTROL_FD)
    sock = socket.socket(fileno=fd)
    reactor, refused = prepare(module)
    if refused is not None:
        send(sock, {"refused": refused})
        raise SystemExit(0)
    gc.collect()
    gc.freeze()  # the children share these pages: their GC must not write to them
    gc.disable()
    send(sock, {"ready": os.getpid()})
    serve(sock, module, reactor)


if __name__ == "__main__":
    main()
