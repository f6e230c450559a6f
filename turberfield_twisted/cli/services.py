"""
``proactor``'s service commands: ``service ls|show|create|rm``, ``scale
NAME N`` and ``rollout NAME``, each a call of the control API's
``/services`` routes, printed as tables (``--json``: the API's JSON).

``--wait`` waits (up to ``--timeout``, at most 60 s) until every instance
is ready (``create``, ``scale``) or the rollout has ended (``rollout``),
and fails (exit 1) with the reason if it did not get there.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import Any

from turberfield_twisted.cli.client import ControlClient
from turberfield_twisted.cli.format import format_jobs, format_table
from turberfield_twisted.cli.pick import CliError

__all__ = ["SERVICE_COMMANDS", "add_parsers", "format_service", "format_services"]

#: The longest a ``--wait`` waits, in seconds (the API's own bound).
MAX_WAIT = 60.0


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, not {text[:80]!r}")
    return key, value


def _count(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text[:80]!r}"
                                         ) from None


def add_parsers(commands: Any) -> None:
    """Add ``service``, ``scale`` and ``rollout`` to the ``proactor`` subcommands."""
    service = commands.add_parser("service", help="services: N instances of a module on one"
                                                  " address")
    actions = service.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("ls", help="list services: address, instances ready, rollout")
    actions.add_parser("show", help="show a service and its instances").add_argument("name")
    create = actions.add_parser("create", help="make a service")
    create.add_argument("name")
    create.add_argument("module")
    create.add_argument("--listen", metavar="ADDR",
                        help="PORT (on 127.0.0.1), HOST:PORT or [IPV6]:PORT (none for a"
                             " module Slurm runs: reached through its relay)")
    create.add_argument("--spread", choices=("nodes", "none"),
                        help="a Slurm service's instances on different nodes (default nodes)")
    create.add_argument("--instances", type=_count, default=1)
    create.add_argument("--surge", type=_count, default=1,
                        help="new instances a rollout starts at once (default 1)")
    create.add_argument("--max-unavailable", type=_count, default=0,
                        help="how far below its count of ready instances a rollout may go")
    create.add_argument("--session")
    create.add_argument("--set", dest="config", type=_key_value, action="append", default=[],
                        metavar="KEY=VALUE", help="an override of each instance (repeatable)")
    create.add_argument("--wait", action="store_true", help="wait until every one is ready")
    actions.add_parser("rm", help="remove a service (its instances drained)").add_argument(
        "name")
    scale = commands.add_parser("scale", help="scale a service live (the newest drained"
                                              " first)")
    scale.add_argument("name")
    scale.add_argument("instances", type=_count)
    scale.add_argument("--wait", action="store_true", help="wait until every one is ready")
    rollout = commands.add_parser("rollout", help="replace a service's instances a step at"
                                                  " a time, rolled back if a new one fails")
    rollout.add_argument("name")
    rollout.add_argument("--module", help="roll out to this module")
    rollout.add_argument("--set", dest="config", type=_key_value, action="append", default=[],
                         metavar="KEY=VALUE", help="roll out to these overrides (repeatable)")
    rollout.add_argument("--wait", action="store_true",
                         help="wait until it has ended; fail if it was rolled back")


def _rollout_cell(service: dict[str, Any]) -> str:
    rollout = service.get("rollout")
    if not rollout:
        return "-"
    return f"{rollout['state']} {rollout['replaced']}/{rollout['total']}"


def format_services(services: list[dict[str, Any]]) -> str:
    """The ``service ls`` table."""
    return format_table(["NAME", "MODULE", "LISTEN", "READY", "ROLLOUT"],
                        [[s.get("name"), s.get("module"), s.get("listen") or "relay only",
                          f"{s.get('ready')}/{s.get('instances')}", _rollout_cell(s)]
                         for s in services])


def format_service(service: dict[str, Any]) -> str:
    """One service as ``key  value`` lines, its rollout's reason, then its instances."""
    rows = [[key, service.get(key)] for key in ("name", "module", "listen", "relay", "spread",
                                                 "instances", "ready", "surge",
                                                 "max_unavailable",
                                                 "session", "declared", "last_error")]
    rows.append(["rollout", _rollout_cell(service)])
    rollout = service.get("rollout") or {}
    if rollout.get("reason"):
        rows.append(["rollout.reason", rollout["reason"]])
    rows += [[f"config.{key}", value]
             for key, value in sorted((service.get("config") or {}).items())]
    head = "\n".join(format_table(["", ""], rows).splitlines()[1:])
    return f"{head}\n\n{format_jobs(service.get('members') or [])}"


def _config(args: argparse.Namespace) -> dict[str, str] | None:
    return dict(args.config) if args.config else None


async def _waited(client: ControlClient, name: str, wait: str,
                  args: argparse.Namespace) -> dict[str, Any]:
    """Service ``name`` once it is as ``wait`` says; CliError if it did not get there."""
    service = await client.service(name, wait=wait, timeout=min(args.timeout, MAX_WAIT))
    rollout = service.get("rollout") or {}
    if wait == "rollout" and rollout.get("state") == "failed":
        raise CliError(f"service {name}: the rollout failed and was rolled back:"
                       f" {rollout.get('reason')}")
    if wait == "rollout" and rollout.get("state") == "running":
        raise CliError(f"service {name}: the rollout is still running"
                       f" ({rollout['replaced']}/{rollout['total']} replaced)")
    if wait == "ready" and service.get("ready", 0) < service.get("instances", 0):
        raise CliError(f"service {name}: {service.get('ready')} of {service.get('instances')}"
                       f" instances ready")
    return service


async def _service(client: ControlClient, args: argparse.Namespace) -> Any:
    if args.action == "ls":
        services = await client.services()
        return {"services": services} if args.json else format_services(services)
    if args.action == "rm":
        service = await client.remove_service(args.name)
        return service if args.json else f"{args.name} removed"
    if args.action == "create":
        service = await client.create_service(
            args.name, args.module, args.listen, args.instances, args.surge,
            args.max_unavailable, args.session, _config(args), args.spread)
        if args.wait:
            service = await _waited(client, args.name, "ready", args)
    else:
        service = await client.service(args.name)
    return service if args.json else format_service(service)


async def _scale(client: ControlClient, args: argparse.Namespace) -> Any:
    service = await client.scale(args.name, args.instances)
    if args.wait:
        service = await _waited(client, args.name, "ready", args)
    return service if args.json else format_service(service)


async def _rollout(client: ControlClient, args: argparse.Namespace) -> Any:
    service = await client.rollout(args.name, args.module, _config(args))
    if args.wait:
        service = await _waited(client, args.name, "rollout", args)
    return service if args.json else format_service(service)


#: ``proactor``'s service commands, by name.
SERVICE_COMMANDS: dict[str, Callable[[ControlClient, argparse.Namespace], Awaitable[Any]]] = {
    "service": _service, "scale": _scale, "rollout": _rollout,
}
