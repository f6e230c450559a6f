"""
How ``proactor`` names things: a job's guid, or a web-hook's id, by any
unique beginning of it; and :class:`CliError`, a failure to report as one
line.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from turberfield_twisted.cli.client import ControlClient

__all__ = ["CliError", "pick", "resolve"]


class CliError(Exception):
    """A failure to report as one line on stderr."""


def pick(items: Sequence[dict[str, Any]], given: str, key: str = "guid",
         what: str = "job's guid") -> dict[str, Any]:
    """
    The item of ``items`` whose ``key`` is ``given``, or else the only one
    whose ``key`` begins so; else :class:`CliError` saying why (none, or
    which ones begin so).
    """
    by_name = {str(item[key]): item for item in items}
    if given in by_name:
        return by_name[given]
    matches = sorted(name for name in by_name if name.startswith(given))
    if len(matches) == 1:
        return by_name[matches[0]]
    if not matches:
        raise CliError(f"no {what} is or begins with {given[:64]!r}")
    shown = ", ".join(name[:16] for name in matches[:10])
    raise CliError(f"{given[:64]!r} begins {len(matches)} {what.split()[-1]}s: {shown}"
                   f"{', ...' if len(matches) > 10 else ''}; give more of it")


async def resolve(client: ControlClient, given: str) -> str:
    """The guid that is ``given``, or the only one that begins with it; else CliError."""
    return str(pick(await client.jobs(), given)["guid"])
