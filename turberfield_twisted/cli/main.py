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
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from turberfield_twisted import __version__
from turberfield_twisted.cli.client import ControlClient
from turberfield_twisted.cli.commands import COMMANDS, FAILURES, CliError
from turberfield_twisted.cli.locate import read_api
from turberfield_twisted.cli.services import SERVICE_COMMANDS
from turberfield_twisted.cli.services import add_parsers as add_service_parsers
from turberfield_twisted.contract import default_state_dir
from turberfield_twisted.errors import StateDirError, StateFileError
from turberfield_twisted.worker.parent import make_http

__all__ = ["build_parser", "main"]

PROG = "proactor"


EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


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


def _data(text: str) -> bytes:
    """A raw body: the text itself, or ``@PATH`` for a file's bytes (``@-``: stdin)."""
    if not text.startswith("@"):
        return text.encode("utf-8")
    try:
        if text == "@-":
            return sys.stdin.buffer.read()
        return Path(text[1:]).read_bytes()
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot read {text[1:][:80]}: {exc.strerror}"
                                         ) from None


def _several(commands: Any, name: str, text: str) -> None:
    """``stop``/``restart``: guids (or unique prefixes), ``--all`` or ``--module M``."""
    command = commands.add_parser(name, help=text)
    command.add_argument("guids", nargs="*", metavar="GUID",
                         help="a job's guid, or any unique beginning of one")
    command.add_argument("--all", action="store_true", help="every job that has not ended")
    command.add_argument("--module", help="every job of MODULE that has not ended")


def build_parser() -> argparse.ArgumentParser:
    """The ``proactor`` argument parser."""
    parser = _Parser(prog=PROG, description="Drive a turberfield-twisted initiator. Wherever a"
                     " GUID is asked for, any unique beginning of one will do.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument("--url", help="the control API's base URL (default: from the state dir)")
    parser.add_argument("--token-file", type=Path,
                        help="a file holding the admin token (default: from the state dir)")
    parser.add_argument("--state-dir", type=Path, default=None,
                        help=f"the daemon's state directory (default: {default_state_dir()})")
    parser.add_argument("--json", action="store_true", help="print the API's JSON as it is")
    parser.add_argument("--timeout", type=_positive, default=10.0,
                        help="seconds to wait for each answer (default: 10)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("ls", help="list jobs: state, uptime, restarts, memory, CPU")
    commands.add_parser("watch", help="print job events as they happen (until interrupted)")
    commands.add_parser("reload", help="make the daemon read its config files again")
    launch = commands.add_parser("launch", help="launch a module as a job")
    launch.add_argument("module")
    launch.add_argument("--session")
    launch.add_argument("--set", dest="config", type=_key_value, action="append", default=[],
                        metavar="KEY=VALUE", help="a per-job config override (repeatable)")
    launch.add_argument("--wait", action="store_true",
                        help="wait (up to --timeout, at most 60 s) until the job is ready")
    commands.add_parser("show", help="show a job").add_argument("guid", metavar="GUID")
    _several(commands, "stop", "stop jobs (TERM, then KILL after stop_timeout)")
    _several(commands, "restart", "restart jobs: a running one is stopped first")
    logs = commands.add_parser("logs", help="a job's recent output (-f: and what follows)")
    logs.add_argument("guid", metavar="GUID")
    logs.add_argument("--lines", type=_count, default=100)
    logs.add_argument("-f", "--follow", action="store_true",
                      help="go on printing new lines as the worker writes them")
    send = commands.add_parser("send", help="send a request to a job's worker")
    send.add_argument("guid", metavar="GUID")
    send.add_argument("method")
    send.add_argument("path")
    send.add_argument("--json", dest="body", type=_json_body, default=None, metavar="BODY",
                      help="a JSON body")
    send.add_argument("--data", type=_data, default=None, metavar="TEXT|@FILE",
                      help="a raw body: TEXT, or the bytes of FILE (@- reads stdin)")
    send.add_argument("--content-type", default=None, metavar="TYPE",
                      help="the body's content type (with --data)")
    hooks = commands.add_parser("hooks", help="web-hook subscriptions")
    actions = hooks.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("ls", help="list subscriptions")
    add = actions.add_parser("add", help="subscribe URL to events")
    add.add_argument("hook_url", metavar="URL")
    add.add_argument("events", nargs="+", metavar="EVENT",
                     help="*, a job state, worker:* or worker:NAME")
    actions.add_parser("rm", help="drop a subscription").add_argument("hook_id", metavar="ID")
    add_service_parsers(commands)
    return parser


def locate(args: argparse.Namespace) -> tuple[str, str]:
    """The API's URL and the admin token, from the options or the state directory."""
    try:
        return read_api(args.state_dir or default_state_dir(), args.url, args.token_file)
    except StateFileError as exc:
        if exc.reason is None:
            raise CliError(str(exc)) from None
        raise CliError(f"{exc} (is the daemon running? see --url, --token-file)") from None
    except StateDirError as exc:
        raise CliError(str(exc)) from None


async def _run(reactor: Any, args: argparse.Namespace, url: str, token: str) -> None:
    http, pool = make_http(reactor, persistent=False)
    client = ControlClient(http, url, token, reactor, timeout=args.timeout)
    code = EXIT_OK
    try:
        result = await {**COMMANDS, **SERVICE_COMMANDS}[args.command](client, args)
    except FAILURES as exc:
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
