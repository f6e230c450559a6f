"""
The ``proactor`` commands: each takes the control API's client and the
parsed arguments, and returns what to print (text, or JSON with
``--json``). A guid, or a web-hook's id, may be given as any unique
beginning of one (:mod:`.pick`); ``logs`` and ``watch`` are :mod:`.follow`'s.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from turberfield_twisted.cli import access
from turberfield_twisted.cli.client import ControlClient
from turberfield_twisted.cli.follow import logs, watch
from turberfield_twisted.cli.format import error_line, format_job, format_jobs, printable
from turberfield_twisted.cli.format import format_table as _table
from turberfield_twisted.cli.pick import CliError, pick, resolve
from turberfield_twisted.contract import ENDED, JobState
from turberfield_twisted.errors import ApiError, TransportError

__all__ = ["COMMANDS", "FAILURES", "MAX_WAIT", "CliError", "resolve"]

#: The longest a ``--wait`` waits, whatever ``--timeout`` says.
MAX_WAIT = 60.0


Command = Callable[[ControlClient, argparse.Namespace], Awaitable[Any]]


async def _ls(client: ControlClient, args: argparse.Namespace) -> Any:
    every = await client.jobs()
    if args.state:
        jobs = [job for job in every if job["state"] in args.state]
    else:
        jobs = every if args.all else [job for job in every if job["state"] not in ENDED]
    if args.module:
        jobs = [job for job in jobs if job["module"] == args.module]
    if args.json:
        return {"jobs": jobs}
    hidden = 0 if args.all or args.state else sum(job["state"] in ENDED for job in every)
    more = (f"\n({hidden} ended job{'s' if hidden != 1 else ''} not shown: ls --all shows"
            " them, forget --all forgets them)") if hidden else ""
    return format_jobs(jobs) + more


async def _launch(client: ControlClient, args: argparse.Namespace) -> Any:
    job = await client.launch(args.module, session=args.session, config=dict(args.config))
    if args.wait:
        job = await client.wait(job["guid"], JobState.READY, min(args.timeout, MAX_WAIT))
        if job["state"] != JobState.READY:
            raise CliError(f"job {job['guid']} is {job['state']}: {job.get('last_error') or ''}")
    return job if args.json else job["guid"]


async def _show(client: ControlClient, args: argparse.Namespace) -> Any:
    job = pick(await client.jobs(), args.guid)  # the list holds each job as GET /jobs/{guid}
    return job if args.json else format_job(job)


async def _targets(client: ControlClient, args: argparse.Namespace,
                   ended: bool = False) -> list[str]:
    """
    The guids a command names: given ones (prefixes), ``--all`` or
    ``--module``: every job that has not ended (``ended``: every one that has).
    """
    if args.guids and (args.all or getattr(args, "module", None)):
        raise CliError("name jobs, or give --all or --module, not both")
    if not (args.guids or args.all or getattr(args, "module", None)):
        raise CliError("name the jobs, or give --all" + (
            "" if ended else " or --module MODULE"))
    jobs = await client.jobs()
    if args.guids:
        return [pick(jobs, given)["guid"] for given in args.guids]
    return [job["guid"] for job in jobs
            if (job["state"] in ENDED) == ended and not (ended and job.get("declared"))
            and (args.all or job["module"] == args.module)]


async def _until(client: ControlClient, guid: str, verb: str, deadline: float) -> dict[str, Any]:
    """
    The job once a stop has ended it, or a restart has made it ready again
    (or ended it for good), or at ``deadline`` (the reactor's time). A
    restart of a running job passes through ``exited`` on its way: once.
    """
    wanted = JobState.EXITED if verb == "stop" else JobState.READY
    passed = verb == "stop"
    while True:
        remaining = max(0.0, deadline - client.reactor.seconds())
        job = await client.wait(guid, wanted, remaining)
        if job["state"] == wanted or remaining <= 0 or job["state"] == JobState.FAILED:
            return job
        if job["state"] in ENDED:
            if passed:
                return job
            passed = True


def _each(verb: str) -> Command:
    """
    ``stop`` or ``restart``: the client's method of that name, for each job
    :func:`_targets` names; with ``--wait``, until each has ended (stop)
    or is ready (restart).
    """

    async def command(client: ControlClient, args: argparse.Namespace) -> Any:
        act = getattr(client, verb)
        jobs = [await act(guid) for guid in await _targets(client, args)]
        if args.wait:
            deadline = client.reactor.seconds() + min(args.timeout, MAX_WAIT)
            jobs = [await _until(client, job["guid"], verb, deadline) for job in jobs]
        if args.json:
            return {"jobs": jobs}
        text = "\n".join(f"{job['guid']} {job['state']}" for job in jobs) or f"no job to {verb}"
        wanted = JobState.EXITED if verb == "stop" else JobState.READY
        failed = [job["guid"] for job in jobs if args.wait and job["state"] != wanted]
        if failed:
            print(text)  # what each is, then why it failed
            raise CliError(f"{len(failed)} of {len(jobs)} not {wanted.value} within"
                           f" {min(args.timeout, MAX_WAIT):g}s: {', '.join(failed)}")
        return text

    return command


async def _config(client: ControlClient, args: argparse.Namespace) -> Any:
    guid = await resolve(client, args.guid)
    job = await client.update_config(guid, dict(args.changes))
    if args.json:
        return job
    changed = " ".join(f"{key}={job['config'].get(key, value)}" for key, value in args.changes)
    text = printable(f"{guid} {changed}")
    if not job.get("kept", True):  # a declared job's: its config file says its next start
        text += "\nnote: " + printable(job.get("note") or "not kept for the daemon's next start")
    return text


async def _modules(client: ControlClient, args: argparse.Namespace) -> Any:
    modules = await client.modules()
    if args.json:
        return {"modules": modules}
    return _table(["MODULE", "LAUNCHER", "WARM", "OVERRIDABLE"],
                  [[m["name"], m.get("launcher"), "yes" if m.get("warm") else "no",
                    [f"{key}={m['defaults'][key]}" if key in m.get("defaults", {}) else key
                     for key in m.get("overridable") or []]] for m in modules])


async def _forget(client: ControlClient, args: argparse.Namespace) -> Any:
    jobs = [await client.forget(guid) for guid in await _targets(client, args, ended=True)]
    if args.json:
        return {"jobs": jobs}
    return "\n".join(f"{job['guid']} forgotten" for job in jobs) or "no ended job to forget"


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
    table = _table(["", ""], [[f"{key}:", done.get(key) or "-"] for key in RELOADED]
                   ).split("\n", 1)[1]
    return "\n".join([table, *(f"warning: {printable(line)}"
                               for line in done.get("warnings") or [])])


async def _hooks(client: ControlClient, args: argparse.Namespace) -> Any:
    if args.action == "add":
        hook = await client.add_hook(args.hook_url, args.events)
        return hook if args.json else format_job(hook)
    if args.action == "rm":
        hook = pick(await client.hooks(), args.hook_id, key="id", what="hook's id")
        await client.remove_hook(hook["id"])
        return None
    hooks = await client.hooks()
    if args.json:
        return {"hooks": hooks}
    return _table(["ID", "URL", "EVENTS", "QUEUED", "DELIVERED", "DROPPED"],
                  [[h.get("id"), h.get("url"), h.get("events"), h.get("queued"),
                    h.get("delivered"), h.get("dropped")] for h in hooks])


COMMANDS: dict[str, Command] = {
    "ls": _ls, "launch": _launch, "show": _show, "config": _config, "modules": _modules,
    "stop": _each("stop"), "restart": _each("restart"), "forget": _forget,
    "logs": logs, "watch": watch, "reload": _reload, "send": _send, "hooks": _hooks,
    "whoami": access.whoami, "token": access.token, "audit": access.audit,
}


#: What an API failure looks like on stderr.
FAILURES = (ApiError, TransportError, CliError)
