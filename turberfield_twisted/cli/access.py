"""
The ``proactor`` commands of access: ``whoami``, ``token ls | add | rm |
rotate`` and ``audit``. A new token's secret is written to a file
(``--out``, created 0600) or, if none is given, printed once; the
rotated admin token is written by the daemon to its state dir.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from turberfield_twisted.cli.client import ControlClient
from turberfield_twisted.cli.format import format_table
from turberfield_twisted.cli.pick import CliError

__all__ = ["add_parsers", "audit", "token", "whoami"]


def add_parsers(commands: Any, positive: Any, count: Any) -> None:
    """Add ``whoami``, ``token`` and ``audit`` to the parser's ``commands``."""
    commands.add_parser("whoami", help="the token this CLI uses: its name, role and scope")
    token_cmd = commands.add_parser("token", help="tokens: token ls | add NAME ROLE | rm NAME |"
                                                  " rotate (admin only)")
    actions = token_cmd.add_subparsers(dest="action", required=True,
                                       metavar="{ls,add,rm,rotate}")
    actions.add_parser("ls", help="list the named tokens (never a secret)")
    add = actions.add_parser("add", help="make a named token; its secret is shown once")
    add.add_argument("name")
    add.add_argument("role", choices=["viewer", "operator", "admin"])
    add.add_argument("--scope", action="append", default=[], metavar="NAME",
                     help="limit it to a module or service (repeatable)")
    add.add_argument("--expires", type=positive, default=None, metavar="SECONDS",
                     help="it stops working after this many seconds")
    add.add_argument("--out", type=Path, default=None, metavar="FILE",
                     help="write the secret to FILE (created 0600) instead of printing it")
    actions.add_parser("rm", help="revoke a named token at once").add_argument("name")
    rotate = actions.add_parser("rotate", help="a new admin token, written to the state dir's"
                                               " admin.token; no restart")
    rotate.add_argument("--grace", type=float, default=0.0, metavar="SECONDS",
                        help="the old admin token works this long more (default 0)")
    trail = commands.add_parser("audit", help="the audit trail: changes and refusals (admin)")
    trail.add_argument("--lines", type=count, default=100)


async def whoami(client: ControlClient, args: argparse.Namespace) -> Any:
    found = await client.whoami()
    if args.json:
        return found
    scope = ", ".join(found["scope"]) or "any module or service"
    return f"{found['name']}: {found['role']} ({scope})"


def _write_secret(path: Path, secret: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise CliError(f"cannot create {path}: {exc.strerror} (it must not exist yet)") from None
    with os.fdopen(fd, "w") as out:
        out.write(secret + "\n")


async def token(client: ControlClient, args: argparse.Namespace) -> Any:
    if args.action == "add":
        made = await client.make_token(args.name, args.role, args.scope, args.expires)
        if args.out is not None:
            _write_secret(args.out, made.pop("secret"))
            return made if args.json else f"token {made['name']} written to {args.out}"
        return made if args.json else made["secret"]
    if args.action == "rm":
        await client.revoke_token(args.name)
        return None
    if args.action == "rotate":
        rotated = await client.rotate_admin(args.grace)
        rotated.pop("secret")  # the daemon wrote it to its admin.token
        return rotated if args.json else (
            f"admin token rotated (written to the daemon's admin.token); the old one works"
            f" {args.grace:g} s more")
    tokens = await client.tokens()
    if args.json:
        return {"tokens": tokens}
    return format_table(["NAME", "ROLE", "SCOPE", "EXPIRES", "LAST USED"],
                        [[t["name"], t["role"], ",".join(t["scope"]) or "-", _when(t["expires"]),
                          _when(t["last_used"])] for t in tokens])


def _when(stamp: float | None) -> str:
    return "-" if stamp is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))


async def audit(client: ControlClient, args: argparse.Namespace) -> Any:
    found = await client.audit(args.lines)
    if args.json:
        return found
    rows = [[_when(r["time"]), r["token"], r["role"], r["remote"], r["method"], r["path"],
             r["status"]] for r in found["records"]]
    table = format_table(["TIME", "TOKEN", "ROLE", "FROM", "METHOD", "PATH", "STATUS"], rows)
    return table + (f"\n({found['dropped']} older records dropped)" if found["dropped"] else "")
