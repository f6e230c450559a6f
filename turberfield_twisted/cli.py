"""
``proactor``: the command line of a running initiator's control API.

The API's address and the admin token are read from the daemon's state
directory unless ``--url`` and ``--token-file`` say otherwise. Output is
aligned text, or the API's JSON with ``--json``. Exit status: 0 done, 1
failed (one line on stderr), 2 bad usage. The token is never printed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

from .client import ApiError, ControlClient, TransportError, error_message, make_http
from .job import JobState
from .state import API_FILE, TOKEN_FILE, default_state_dir

__all__ = ["build_parser", "format_job", "format_logs", "format_table", "main"]

PROG = "proactor"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class CliError(Exception):
    """A failure to report as one line on stderr."""


class _Parser(argparse.ArgumentParser):
    """Usage errors are one line on stderr and exit 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{PROG}: error: {message} (see {PROG} --help)\n")
        raise SystemExit(EXIT_USAGE)


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, not {text[:80]!r}")
    return key, value


def _json_body(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise argparse.ArgumentTypeError("the body is not JSON") from None


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, not {text[:80]!r}")
    return value


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number above 0, not {text[:80]!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    """The ``proactor`` argument parser."""
    parser = _Parser(prog=PROG, description="Drive a turberfield-twisted initiator.")
    parser.add_argument("--url", help="the control API's base URL (default: from the state dir)")
    parser.add_argument("--token-file", type=Path,
                        help="a file holding the admin token (default: from the state dir)")
    parser.add_argument("--state-dir", type=Path, default=None,
                        help=f"the daemon's state directory (default: {default_state_dir()})")
    parser.add_argument("--json", action="store_true", help="print the API's JSON as it is")
    parser.add_argument("--timeout", type=_positive, default=10.0,
                        help="seconds to wait for each answer (default: 10)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("ls", help="list jobs")
    commands.add_parser("reload", help="make the daemon read its config files again")
    launch = commands.add_parser("launch", help="launch a module as a job")
    launch.add_argument("module")
    launch.add_argument("--session")
    launch.add_argument("--set", dest="config", type=_key_value, action="append", default=[],
                        metavar="KEY=VALUE", help="a per-job config override (repeatable)")
    launch.add_argument("--wait", action="store_true",
                        help="wait (up to --timeout, at most 60 s) until the job is ready")
    for name, text in (("show", "show a job"), ("stop", "stop a job"),
                       ("restart", "start an ended job again")):
        commands.add_parser(name, help=text).add_argument("guid")
    logs = commands.add_parser("logs", help="a job's recent output")
    logs.add_argument("guid")
    logs.add_argument("--lines", type=_count, default=100)
    send = commands.add_parser("send", help="send a request to a job's worker")
    send.add_argument("guid")
    send.add_argument("method")
    send.add_argument("path")
    send.add_argument("--json", dest="body", type=_json_body, default=None, metavar="BODY",
                      help="a JSON body")
    hooks = commands.add_parser("hooks", help="web-hook subscriptions")
    actions = hooks.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("ls", help="list subscriptions")
    add = actions.add_parser("add", help="subscribe URL to events")
    add.add_argument("hook_url", metavar="URL")
    add.add_argument("events", nargs="+", metavar="EVENT")
    actions.add_parser("rm", help="drop a subscription").add_argument("hook_id", metavar="ID")
    return parser


# -- formatting ---------------------------------------------------------------


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value) or "-"
    return str(value)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns aligned on the widest cell; None shows as ``-``."""
    cells = [list(headers)] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    )


JOB_COLUMNS = ("guid", "module", "state", "port", "pid", "restarts")


def format_jobs(jobs: Sequence[dict[str, Any]]) -> str:
    """The ``ls`` table: GUID MODULE STATE PORT PID RESTARTS."""
    return format_table([c.upper() for c in JOB_COLUMNS],
                        [[job.get(c) for c in JOB_COLUMNS] for job in jobs])


def _when(value: Any) -> str:
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value).isoformat(sep=" ", timespec="milliseconds")
    return _cell(value)


def format_job(job: dict[str, Any]) -> str:
    """One job as aligned ``key  value`` lines, its config keys as ``config.KEY``."""
    rows = [[key, _when(value) if key == "started" else value]
            for key, value in job.items() if key != "config"]
    rows += [[f"config.{key}", value] for key, value in sorted((job.get("config") or {}).items())]
    return "\n".join(format_table(["", ""], rows).splitlines()[1:])


def format_logs(lines: Sequence[dict[str, Any]]) -> str:
    """Output lines as ``time stream line``."""
    return "\n".join(f"{_when(e.get('time'))} {e.get('stream', '-')} {e.get('line', '')}"
                     for e in lines)


# -- commands -----------------------------------------------------------------

Command = Callable[[ControlClient, argparse.Namespace], Awaitable[Any]]


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


async def _restart(client: ControlClient, args: argparse.Namespace) -> Any:
    job = await client.restart(args.guid)
    return job if args.json else f"{job['guid']} {job['state']}"


async def _show(client: ControlClient, args: argparse.Namespace) -> Any:
    job = await client.job(args.guid)
    return job if args.json else format_job(job)


async def _stop(client: ControlClient, args: argparse.Namespace) -> Any:
    job = await client.stop(args.guid)
    return job if args.json else f"{job['guid']} {job['state']}"


async def _logs(client: ControlClient, args: argparse.Namespace) -> Any:
    lines = await client.logs(args.guid, lines=args.lines)
    return {"guid": args.guid, "lines": lines} if args.json else format_logs(lines)


async def _send(client: ControlClient, args: argparse.Namespace) -> Any:
    status, _, body = await client.send(args.guid, args.method, args.path, json=args.body)
    if status >= 400:
        raise ApiError(status, error_message(body, status))
    sys.stdout.buffer.write(body if not body or body.endswith(b"\n") else body + b"\n")
    sys.stdout.flush()
    return None


RELOADED = ("started", "stopped", "restarted", "unchanged", "restart_needed")


async def _reload(client: ControlClient, args: argparse.Namespace) -> Any:
    done = await client.reload()
    if args.json:
        return done
    return format_table(["", ""], [[f"{key}:", done.get(key) or "-"] for key in RELOADED]
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
    return format_table(["ID", "URL", "EVENTS"],
                        [[h.get("id"), h.get("url"), h.get("events")] for h in hooks])


COMMANDS: dict[str, Command] = {
    "ls": _ls, "launch": _launch, "show": _show, "stop": _stop, "restart": _restart,
    "logs": _logs, "reload": _reload,
    "send": _send, "hooks": _hooks,
}


# -- running ------------------------------------------------------------------


def _read(path: Path, what: str) -> str:
    try:
        text = path.read_text("utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise CliError(f"cannot read {what} from {path}: {reason}"
                       " (is the daemon running? see --url, --token-file)") from None
    if not text:
        raise CliError(f"{path} holds no {what}")
    return text


def locate(args: argparse.Namespace) -> tuple[str, str]:
    """The API's URL and the admin token, from the options or the state directory."""
    state_dir = args.state_dir or default_state_dir()
    url = args.url or _read(state_dir / API_FILE, "the API address")
    if not url.startswith(("http://", "https://")):
        raise CliError(f"the API address must start with http:// or https://, not {url[:80]!r}")
    token = _read(args.token_file or state_dir / TOKEN_FILE, "the admin token")
    return url, token


async def _run(reactor: Any, args: argparse.Namespace, url: str, token: str) -> None:
    http, pool = make_http(reactor, persistent=False)
    client = ControlClient(http, url, token, reactor, timeout=args.timeout)
    code = EXIT_OK
    try:
        result = await COMMANDS[args.command](client, args)
    except (ApiError, TransportError, CliError) as exc:
        code = _fail(str(exc))
    except Exception as exc:
        code = _fail(f"{type(exc).__name__}: {exc}")
    else:
        if args.json and result is not None:
            print(json.dumps(result, indent=2))
        elif result:
            print(result)
    finally:
        await pool.closeCachedConnections()
    if code != EXIT_OK:
        raise SystemExit(code)


def _fail(message: str) -> int:
    sys.stderr.write(f"{PROG}: error: {message.splitlines()[0] if message else 'failed'}\n")
    return EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``proactor`` with ``argv`` (default: the command line); the exit status."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already reported
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        url, token = locate(args)
    except CliError as exc:
        return _fail(str(exc))
    from twisted.internet.task import react

    try:
        react(_run, (args, url, token))
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_FAILED
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
