"""
``proactor``: the command line of a running initiator's control API.

The API's address and the admin token are read from the daemon's state
directory unless ``--url`` and ``--token-file`` say otherwise. Output is
aligned text, or the API's JSON with ``--json``. Exit status: 0 done, 1
failed (one line on stderr, saying what to do next where it can), 2 bad
usage. The token is never printed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from turberfield_twisted.cli.client import ControlClient
from turberfield_twisted.cli.commands import COMMANDS, FAILURES, CliError
from turberfield_twisted.cli.format import printable
from turberfield_twisted.cli.locate import read_api
from turberfield_twisted.cli.parser import EXIT_FAILED, EXIT_OK, EXIT_USAGE, PROG, build_parser
from turberfield_twisted.cli.services import SERVICE_COMMANDS
from turberfield_twisted.contract import API_FILE, TOKEN_FILE, default_state_dir
from turberfield_twisted.errors import ApiError, StateDirError, StateFileError, TransportError
from turberfield_twisted.worker.parent import make_http

__all__ = ["build_parser", "main"]

#: How to start a daemon, for an error that found none.
START_ONE = ("start one with: twistd -n proactor (make run, in a clone), or see --state-dir,"
             " --url")


class Where(NamedTuple):
    """The daemon the CLI talks to: its URL and token, and where each was found."""

    url: str
    token: str
    url_from: str
    token_file: Path


def locate(args: argparse.Namespace) -> Where:
    """The API's URL and the admin token, from the options or the state directory."""
    state_dir = args.state_dir or default_state_dir()
    try:
        url, token = read_api(state_dir, args.url, args.token_file)
    except StateFileError as exc:
        if exc.reason is None:
            raise CliError(str(exc)) from None
        raise CliError(f"{exc} (is the daemon running? {START_ONE}, --token-file)") from None
    except StateDirError as exc:
        raise CliError(str(exc)) from None
    url_from = "given with --url" if args.url else f"read from {state_dir / API_FILE}"
    return Where(url, token, url_from, args.token_file or state_dir / TOKEN_FILE)


def explain(exc: Exception, where: Where) -> str:
    """One line for a failure, with what to do next: which token, which address, from where."""
    if isinstance(exc, ApiError) and exc.status == 401:
        return (f"{exc}: the daemon at {where.url} refused the token in"
                f" {where.token_file} (is it this daemon's? see --token-file, --state-dir)")
    if isinstance(exc, ApiError) and exc.status == 403 and (
            "role" in exc.message or "limited to" in exc.message):
        return f"{exc} (the token in {where.token_file} may not: see proactor whoami)"
    if isinstance(exc, TransportError) and where.url.startswith("https:"):
        return (f"{exc} (the address {where.url_from}; over TLS, give the CA that signed its"
                " certificate with --ca)")
    if isinstance(exc, TransportError):
        return f"{exc} (the address {where.url_from}; is the daemon running? {START_ONE})"
    return str(exc)


async def _run(reactor: Any, args: argparse.Namespace, where: Where) -> None:
    http, pool = make_http(reactor, persistent=False, ca_pem=args.ca_pem)
    client = ControlClient(http, where.url, where.token, reactor, timeout=args.timeout)
    code = EXIT_OK
    try:
        result = await {**COMMANDS, **SERVICE_COMMANDS}[args.command](client, args)
    except FAILURES as exc:
        code = _fail(explain(exc, where))
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


def _read_ca(path: Path | None) -> bytes | None:
    """The CA file given with ``--ca`` (None: the system's store)."""
    if path is None:
        return None
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read the CA {path}: {exc.strerror}") from None
    if b"-----BEGIN CERTIFICATE-----" not in pem:
        raise CliError(f"{path} holds no PEM certificate (--ca wants the CA's PEM file)")
    return pem


def _fail(message: str) -> int:
    line = message.splitlines()[0] if message else "failed"
    sys.stderr.write(f"{PROG}: error: {printable(line)}\n")
    return EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``proactor`` with ``argv`` (default: the command line); the exit status."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already reported
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        where = locate(args)
        args.ca_pem = _read_ca(args.ca)
    except CliError as exc:
        return _fail(str(exc))
    from twisted.internet.task import react

    try:
        react(_run, (args, where))
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_FAILED
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
