"""
The ``proactor`` command line's parser: its commands, their arguments and
how each argument is read. A usage error is one line on stderr, naming the
help of the command it is about, and exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from turberfield_twisted import __version__
from turberfield_twisted.cli import access
from turberfield_twisted.cli.services import add_parsers as add_service_parsers
from turberfield_twisted.contract import JobState, default_state_dir

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "PROG", "build_parser"]

PROG = "proactor"


EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    """Usage errors are one line on stderr, naming this command's help, and exit 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{PROG}: error: {message} (see {self.prog} --help)\n")
        raise SystemExit(EXIT_USAGE)


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, not {text[:80]!r}")
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


_AGO = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _since(text: str) -> str:
    """
    ``--since``: ``30s``, ``5m``, ``2h``, ``1d`` ago, seconds since the
    epoch, or an ISO 8601 date and time (UTC unless it says): as seconds
    since the epoch, which the API takes.
    """
    unit = _AGO.get(text[-1:])
    try:
        if unit is not None and text[:-1].replace(".", "", 1).isdigit():
            return f"{time.time() - float(text[:-1]) * unit:.6f}"
        if text.replace(".", "", 1).isdigit():
            return text
        when = datetime.fromisoformat(text)
        return f"{(when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp():.6f}"
    except (ValueError, OverflowError):
        raise argparse.ArgumentTypeError(
            f"expected 30s, 5m, 2h, 1d, seconds since the epoch or an ISO 8601 time,"
            f" not {text[:80]!r}") from None


_STATES = [state.value for state in JobState]


def _states(text: str) -> list[str]:
    """``STATE[,STATE...]``: job state names."""
    states = [word for word in text.split(",") if word]
    unknown = [word for word in states if word not in _STATES]
    if unknown or not states:
        raise argparse.ArgumentTypeError(f"expected states of {', '.join(_STATES)}, not"
                                         f" {text[:80]!r}")
    return states


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


def _several(commands: Any, name: str, text: str, until: str) -> None:
    """``stop``/``restart``: guids (or unique prefixes), ``--all`` or ``--module M``."""
    command = commands.add_parser(name, help=text)
    command.add_argument("guids", nargs="*", metavar="GUID",
                         help="a job's guid, or any unique beginning of one")
    command.add_argument("--all", action="store_true", help="every job that has not ended")
    command.add_argument("--module", help="every job of MODULE that has not ended")
    command.add_argument("--wait", action="store_true",
                         help=f"wait (up to --timeout, at most 60 s) until each is {until}")


def _raw(command: argparse.ArgumentParser) -> None:
    command.add_argument("--raw", action="store_true",
                         help="print what workers wrote as it is (default: control characters,"
                              " such as the ESC of a terminal sequence, escaped as \\x1b)")


def build_parser() -> argparse.ArgumentParser:
    """The ``proactor`` argument parser."""
    parser = _Parser(prog=PROG, description="Drive a turberfield-twisted initiator. Wherever a"
                     " GUID is asked for, any unique beginning of one will do.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument("--url", help="the control API's base URL (default: from the state dir)")
    parser.add_argument("--token-file", type=Path,
                        help="a file holding a token: the admin token, or a named one of any"
                             " role (default: the state dir's admin.token)")
    parser.add_argument("--ca", type=Path, default=None, metavar="FILE",
                        help="a CA's PEM file to check an https daemon against (default: the"
                             " system's store; never unchecked)")
    parser.add_argument("--state-dir", type=Path, default=None,
                        help=f"the daemon's state directory (default: {default_state_dir()})")
    parser.add_argument("--json", action="store_true", help="print the API's JSON as it is")
    parser.add_argument("--timeout", type=_positive, default=10.0,
                        help="seconds to wait for each answer (default: 10)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    ls = commands.add_parser("ls", help="list the jobs that have not ended: state, uptime,"
                                        " restarts, memory, CPU (--all: ended ones too)")
    ls.add_argument("--all", action="store_true", help="ended jobs (exited, failed) too")
    ls.add_argument("--state", type=_states, action="extend", metavar="STATE[,STATE]",
                    help=f"only jobs in these states ({', '.join(_STATES)})")
    ls.add_argument("--module", help="only jobs of MODULE")
    watch = commands.add_parser("watch", help="print job events as they happen (until"
                                              " interrupted)")
    _raw(watch)
    commands.add_parser("reload", help="make the daemon read its config files again")
    commands.add_parser("modules", help="the modules a launch may name, and the keys it may set")
    launch = commands.add_parser("launch", help="launch a module as a job")
    launch.add_argument("module")
    launch.add_argument("--session")
    launch.add_argument("--set", dest="config", type=_key_value, action="append", default=[],
                        metavar="KEY=VALUE", help="a per-job config override (repeatable)")
    launch.add_argument("--wait", action="store_true",
                        help="wait (up to --timeout, at most 60 s) until the job is ready")
    commands.add_parser("show", help="show a job").add_argument("guid", metavar="GUID")
    config = commands.add_parser("config", help="change a job's config live: its overridable"
                                                " keys (its worker's on_config may refuse)")
    config.add_argument("guid", metavar="GUID")
    config.add_argument("changes", nargs="+", type=_key_value, metavar="KEY=VALUE")
    _several(commands, "stop", "stop jobs (TERM, then KILL after stop_timeout)", "exited")
    _several(commands, "restart", "restart jobs: a running one is stopped first", "ready")
    forget = commands.add_parser("forget", help="forget ended jobs (not declared ones): gone"
                                                " from ls --all and the state store")
    forget.add_argument("guids", nargs="*", metavar="GUID",
                        help="an ended job's guid, or any unique beginning of one")
    forget.add_argument("--all", action="store_true", help="every ended job")
    logs = commands.add_parser("logs", help="a job's recent output (-f: and what follows)")
    logs.add_argument("guid", metavar="GUID")
    logs.add_argument("--lines", type=_count, default=100)
    logs.add_argument("--since", type=_since, default=None, metavar="TIME",
                      help="only lines written since TIME: 30s, 5m, 2h, 1d ago, seconds since"
                           " the epoch or ISO 8601 (UTC unless it says); read from the log"
                           " files, so from before a daemon restart too")
    logs.add_argument("-f", "--follow", action="store_true",
                      help="go on printing new lines as the worker writes them")
    _raw(logs)
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
    hooks = commands.add_parser("hooks", help="web-hook subscriptions: hooks ls | add URL"
                                              " EVENT... | rm ID")
    actions = hooks.add_subparsers(dest="action", required=True, metavar="{ls,add,rm}")
    actions.add_parser("ls", help="list subscriptions")
    add = actions.add_parser("add", help="subscribe URL to events")
    add.add_argument("hook_url", metavar="URL")
    add.add_argument("events", nargs="+", metavar="EVENT",
                     help="*, a job state, worker:* or worker:NAME, service:* or service:EVENT")
    actions.add_parser("rm", help="drop a subscription").add_argument(
        "hook_id", metavar="ID", help="a hook's id, or any unique beginning of one")
    access.add_parsers(commands, _positive, _count)
    add_service_parsers(commands)
    return parser
