"""
Network namespaces joined by a bridge, for the multi-node test cluster
(:mod:`.slurmnodes`): :class:`Subnet` (``10.77.K.0/24``, K held through a
lock file so that runs side by side never share one, and every name made
from K: ``tfsK``...) and :class:`Bridge` (the bridge, one namespace per
:class:`Member` on a veth pair, each removed whole by :meth:`Bridge.unmake`).
Only what carries the subnet's prefix is made or removed; the host's own
interfaces and routes are never touched.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import tempfile
from pathlib import Path

import attrs

__all__ = ["PATH", "Bridge", "Member", "Subnet", "ip"]

#: The ``PATH`` the cluster's programs and ``ip`` run with.
PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def ip(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``ip ARGS`` (never raising on its exit: see ``returncode``)."""
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30,
                          check=False, env={"PATH": PATH})


class Subnet:
    """``10.77.K.0/24`` held through a lock file, with the names made from K."""

    def __init__(self, k: int, lock: int):
        self.k, self.lock = k, lock
        self.prefix = f"tfs{k}"
        self.bridge = f"{self.prefix}b"
        self.head = f"{self.prefix}h"

    def addr(self, host: int) -> str:
        """Host ``host``'s address in it."""
        return f"10.77.{self.k}.{host}"

    @classmethod
    def take(cls) -> Subnet:
        """The first subnet no interface here has and whose lock this process can hold."""
        taken = ip("-4", "-o", "addr").stdout
        for k in range(256):
            if f" 10.77.{k}." in taken:
                continue
            path = Path(tempfile.gettempdir()) / f"tf-slurmnodes-10.77.{k}.lock"
            fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            return cls(k, fd)
        raise RuntimeError("no subnet 10.77.K.0/24 free for a test cluster")

    def release(self) -> None:
        """Let the subnet go (its lock)."""
        os.close(self.lock)


@attrs.frozen
class Member:
    """Namespace ``netns`` with ``addr`` on veth ``inner``, whose peer ``link`` is on the bridge."""

    netns: str
    link: str
    inner: str
    addr: str


class Bridge:
    """The subnet's bridge (its address ``.1``) and its ``members``' namespaces."""

    def __init__(self, net: Subnet, members: list[Member]):
        self.net, self.members = net, members

    @staticmethod
    def _must(*args: str) -> None:
        done = ip(*args)
        if done.returncode != 0:
            raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")

    def _join(self, member: Member) -> None:
        netns, inner = member.netns, member.inner
        self._must("netns", "add", netns)
        self._must("link", "add", member.link, "type", "veth", "peer", "name", inner)
        self._must("link", "set", inner, "netns", netns)
        self._must("link", "set", member.link, "master", self.net.bridge)
        self._must("link", "set", member.link, "up")
        self._must("-n", netns, "addr", "add", f"{member.addr}/24", "dev", inner)
        self._must("-n", netns, "link", "set", inner, "up")
        self._must("-n", netns, "link", "set", "lo", "up")

    def make(self) -> None:
        """Make the bridge and every member's namespace on it (RuntimeError if ``ip`` fails)."""
        net = self.net
        self._must("link", "add", net.bridge, "type", "bridge")
        self._must("addr", "add", f"{net.addr(1)}/24", "dev", net.bridge)
        self._must("link", "set", net.bridge, "up")
        for member in self.members:
            self._join(member)

    def pids(self, netns: str) -> list[int]:
        """Every process in namespace ``netns``."""
        return [int(pid) for pid in ip("netns", "pids", netns).stdout.split()]

    def set_link(self, link: str, state: str) -> None:
        """Set the bridge's end ``link`` of a member ``up`` or ``down``."""
        self._must("link", "set", link, state)

    def unmake(self) -> None:
        """Kill what runs in the members' namespaces (SIGKILL, by pid); remove them and the
        links and bridge named for this subnet (nothing else is touched)."""
        for member in self.members:
            for pid in self.pids(member.netns):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            ip("netns", "del", member.netns)  # its veth ends go with it, and their peers
        for link in (*(member.link for member in self.members), self.net.bridge):
            ip("link", "del", link)
