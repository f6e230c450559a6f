"""
The ``proactor`` commands: each takes the control API's client and the
parsed arguments, and returns what to print (text, or JSON with
``--json``). A guid may be given as any unique prefix of one.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

from turberfield_twisted.cli.client import ControlClient, ServerEvent
from turberfield_twisted.cli.format import (
    error_line,
    format_event,
    format_job,
    format_jobs,
    format_logs,
)
from turberfield_twisted.cli.format import format_table as _table
from turberfield_twisted.contract import ENDED, JobState
from turberfield_twisted.errors import ApiError, TransportError

__all__ = ["COMMANDS", "CliError", "resolve"]

#: How many times in a row a dropped event stream is followed again.
FOLLOW_TRIES = 5


class CliError(Exception):
    """A failure to report as one line on stderr."""


Command = Callable[[ControlClient, argparse.Namespace], Awaitable[Any]]


def _pick(jobs: list[dict[str, Any]], given: str) -> dict[str, Any]:
    """The job of ``jobs`` whose guid is ``given``, or else the only one whose guid begins so."""
    by_guid = {job["guid"]: job for job in jobs}
    if given in by_guid:
        return by_guid[given]
    matches = sorted(guid for guid in by_guid if guid.startswith(given))
    if len(matches) == 1:
        return by_guid[matches[0]]
    if not matches:
        raise CliError(f"no job's guid is or begins with {given[:64]!r}")
    shown = ", ".join(guid[:16] for guid in matches[:10])
    raise CliError(f"{given[:64]!r} begins {len(matches)} guids: {shown}"
                   f"{', ...' if len(matches) > 10 else ''}; give more of it")


async def resolve(client: ControlClient, given: str) -> str:
    """The guid that is ``given``, or the only one that begins with it; else CliError."""
    return str(_pick(await client.jobs(), given)["guid"])


async def _ls(client: ControlClient, args: argparse.Namespace) -> Any:
    jobs = await client.jobs()
    return {"jobs": jobs} if args.json else format_jobs(jobs)


async def _launch(client: ControlClient, args: argparse.Namespace) -> Any:
    job = await client.launch(args.module, session=args.session, config=dict(args.config))
    if args.wait:
        job = await client.wait(job["guid"], JobState.READY, min(args.timeout, 60.0))
        if job["state"] != JobState.READY:
            raise CliError(f"job {job['guid']} is {job['state']}: {job.get('last_error') or ''}")
    return job if args.json else job["guid"]


async def _show(client: ControlClient, args: argparse.Namespace) -> Any:
    job = _pick(await client.jobs(), args.guid)  # the list holds each job as GET /jobs/{guid}
    return job if args.json else format_job(job)


async def _targets(client: ControlClient, args: argparse.Namespace) -> list[str]:
    """The guids a stop or restart names: given ones (prefixes), ``--all`` or ``--module``."""
    if args.guids and (args.all or args.module):
        raise CliError("name jobs, or give --all or --module, not both")
    if not (args.guids or args.all or args.module):
        raise CliError("name the jobs, or give --all or --module MODULE")
    jobs = await client.jobs()
    if args.guids:
        return [_pick(jobs, given)["guid"] for given in args.guids]
    return [job["guid"] for job in jobs
            if job["state"] not in ENDED and (args.all or job["module"] == args.module)]


def _each(verb: str) -> Command:
    """
    ``stop`` or ``restart``: the client's method of that name, for each job
    :func:`_targets` names.
    """

    async def command(client: ControlClient, args: argparse.Namespace) -> Any:
        act = getattr(client, verb)
        jobs = [await act(guid) for guid in await _targets(client, args)]
        if args.json:
            return {"jobs": jobs}
        return "\n".join(f"{job['guid']} {job['state']}" for job in jobs) or f"no job to {verb}"

    return command


async def _logs(client: ControlClient, args: argparse.Namespace) -> Any:
    guid = await resolve(client, args.guid)
    if not args.follow:
        lines = await client.logs(guid, lines=args.lines)
        return {"guid": guid, "lines": lines} if args.json else format_logs(lines)
    seen: list[tuple[float, str]] = []

    def line(event: ServerEvent) -> None:
        data = event.data
        if event.event != "log" or not isinstance(data, dict):
            return
        mark = (float(data.get("time") or 0), str(data.get("line")))
        if seen and mark <= seen[-1]:
            return  # already printed from the job's tail
        seen[:] = [mark]
        _print(json.dumps(data) if args.json else format_event("log", data))

    async def backlog() -> None:
        for entry in await client.logs(guid, lines=args.lines):
            line(ServerEvent(None, "log", entry))

    await _follow(client, line, logs=guid, first=backlog)
    return None


async def _watch(client: ControlClient, args: argparse.Namespace) -> Any:
    def event(event: ServerEvent) -> None:
        if event.event in ("state", "worker", "service", "gap"):
            _print(json.dumps({"event": event.event, "data": event.data}) if args.json
                   else format_event(event.event, event.data))

    async def watching() -> None:
        sys.stderr.write(f"proactor: watching {client.url} (interrupt to stop)\n")
        sys.stderr.flush()

    await _follow(client, event, first=watching)
    return None


async def _follow(client: ControlClient, on_event: Callable[[ServerEvent], None],
                  logs: str | None = None,
                  first: Callable[[], Awaitable[None]] | None = None) -> None:
    """Follow the event stream until interrupted: see :class:`_Following`."""
    await _Following(client, on_event, logs, first).run()


class _Following:
    """
    Follow ``GET /events`` (with ``logs``) for ``on_event``. Once the stream
    is open, ``first()`` runs, and the stream's events wait until it is
    done. A stream that drops is followed again from the last id seen, up
    to :data:`FOLLOW_TRIES` times in a row with no event between.
    """

    def __init__(self, client: ControlClient, on_event: Callable[[ServerEvent], None],
                 logs: str | None, first: Callable[[], Awaitable[None]] | None):
        self.client = client
        self.on_event = on_event
        self.logs = logs
        self.first = first
        self.last_id: str | None = None
        self.held: list[ServerEvent] | None = None if first is not None else []
        self.released = first is None
        self.opened = False
        self.tries = 0

    async def run(self) -> None:
        while True:
            try:
                await self.client.events(self._each, logs=self.logs, last_id=self.last_id)
            except TransportError:
                if not self.opened:
                    raise  # it never answered at all
            self.tries += 1
            if self.tries >= FOLLOW_TRIES:
                raise CliError("the event stream keeps ending: giving up")
            await deferLater(self.client.reactor, float(self.tries), lambda: None)

    def _each(self, event: ServerEvent) -> None:
        if event.id is not None:
            self.last_id = event.id
        if event.event == "open":
            self.opened = True
            if self.first is not None and self.held is None:
                self.held = []
                Deferred.fromCoroutine(self._first()).addBoth(self._release)
            return
        self.tries = 0
        if self.released:
            self.on_event(event)
        else:
            assert self.held is not None
            self.held.append(event)

    async def _first(self) -> None:
        assert self.first is not None
        await self.first()

    def _release(self, result: Any) -> None:
        if isinstance(result, Failure):
            sys.stderr.write(f"proactor: error: {result.getErrorMessage().splitlines()[0]}\n")
        self.released = True
        for event in self.held or []:
            self.on_event(event)
        self.held = []


def _print(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


async def _send(client: ControlClient, args: argparse.Namespace) -> Any:
    guid = await resolve(client, args.guid)
    if args.data is not None and args.body is not None:
        raise CliError("give a body with --json or --data, not both")
    status, ctype, body = await client.send(
        guid, args.method, args.path, json=args.body, data=args.data,
        content_type=args.content_type)
    if status >= 400:
        raise CliError(error_line(status, ctype, body))
    sys.stdout.buffer.write(body if not body or body.endswith(b"\n") else body + b"\n")
    sys.stdout.flush()
    return None


RELOADED = ("started", "stopped", "restarted", "unchanged", "restart_needed")


async def _reload(client: ControlClient, args: argparse.Namespace) -> Any:
    done = await client.reload()
    if args.json:
        return done
    return _table(["", ""], [[f"{key}:", done.get(key) or "-"] for key in RELOADED]
                  ).split("\n", 1)[1]


async def _hooks(client: ControlClient, args: argparse.Namespace) -> Any:
    if args.action == "add":
        hook = await client.add_hook(args.hook_url, args.events)
        return hook if args.json else format_job(hook)
    if args.action == "rm":
        await client.remove_hook(args.hook_id)
        return None
    hooks = await client.hooks()
    if args.json:
        return {"hooks": hooks}
    return _table(["ID", "URL", "EVENTS", "QUEUED", "DELIVERED", "DROPPED"],
                  [[h.get("id"), h.get("url"), h.get("events"), h.get("queued"),
                    h.get("delivered"), h.get("dropped")] for h in hooks])


COMMANDS: dict[str, Command] = {
    "ls": _ls, "launch": _launch, "show": _show,
    "stop": _each("stop"), "restart": _each("restart"),
    "logs": _logs, "watch": _watch, "reload": _reload, "send": _send, "hooks": _hooks,
}


#: What an API failure looks like on stderr.
FAILURES = (ApiError, TransportError, CliError)
