"""
What the watch mode asks before it restarts anything: where a module's
source is (found on the workers' path, as the launcher finds it, without
importing anything), and whether it imports cleanly in a throwaway
``python -P -c "import MODULE"`` with the workers' environment, bounded in
time (killed past it) and in what of its stderr is kept.
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone
from twisted.internet.interfaces import IDelayedCall, IReactorProcess, IReactorTime
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

__all__ = ["MAX_ERROR", "Source", "check_import", "drop_bytecode", "source_of", "worker_path"]

#: The most of a failed import's stderr that is kept (its end: the error itself).
MAX_ERROR = 16 * 1024


@attrs.frozen
class Source:
    """Where a module's code is: ``root`` (a package's directory, walked whole, or a file's)."""

    root: Path
    recursive: bool


def source_of(module: str, path: Sequence[str]) -> Source | None:
    """
    The source of dotted ``module`` on ``path`` (a worker's ``sys.path``),
    found without importing: its top package's directory (all of it), or
    the directory of a top-level module file; None if it is not found.
    """
    top = module.split(".")[0]
    spec = importlib.machinery.PathFinder.find_spec(top, [p for p in path if p])
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return Source(Path(next(iter(spec.submodule_search_locations))), True)
    if spec.origin is None:
        return None
    return Source(Path(spec.origin).parent, False)


def drop_bytecode(paths: Sequence[str]) -> None:
    """
    Remove the cached bytecode of each source file of ``paths``: Python
    trusts a ``.pyc`` whose source has the same size and the same whole
    second of mtime, so a quick edit of the same size would run the old code.
    """
    for path in paths:
        with contextlib.suppress(OSError, ValueError, NotImplementedError):
            os.unlink(importlib.util.cache_from_source(path))


class _Run(ProcessProtocol):
    """A throwaway process: its exit code (None: killed), the ends of its stdout and stderr."""

    def __init__(self) -> None:
        self.ended: Deferred[tuple[int | None, bytes, bytes]] = Deferred()
        self._out = b""
        self._err = b""
        self.killer: IDelayedCall | None = None
        self.killed = False

    def outReceived(self, data: bytes) -> None:
        self._out = (self._out + data)[-MAX_ERROR:]

    def errReceived(self, data: bytes) -> None:
        self._err = (self._err + data)[-MAX_ERROR:]

    def processEnded(self, reason: Failure) -> None:
        if self.killer is not None and self.killer.active():
            self.killer.cancel()
        code = 0 if isinstance(reason.value, ProcessDone) else getattr(reason.value, "exitCode",
                                                                      None)
        self.ended.callback((code, self._out, self._err))


def _spawn(reactor: IReactorProcess, argv: list[str], env: Mapping[str, str],
           timeout: float, clock: IReactorTime) -> _Run:
    run = _Run()
    transport = reactor.spawnProcess(run, argv[0], argv, env=dict(env))
    def kill() -> None:
        run.killed = True
        transport.signalProcess("KILL")

    run.killer = clock.callLater(timeout, kill)
    return run


async def check_import(reactor: IReactorProcess, clock: IReactorTime, module: str,
                       env: Mapping[str, str], timeout: float = 20.0,
                       python: str = sys.executable) -> str | None:
    """
    Import ``module`` in a throwaway ``python -P`` with ``env`` (no bytecode
    written), killed after ``timeout`` seconds: None if it imports cleanly,
    else why not (the last line of its error, or that it took too long).
    """
    env = {**env, "PYTHONDONTWRITEBYTECODE": "1"}
    run = _spawn(reactor, [python, "-P", "-c", f"import {module}"], env, timeout, clock)
    code, _, err = await run.ended
    if code == 0:
        return None
    if run.killed:
        return f"the import of {module} did not end within {timeout:g}s"
    lines = [line for line in err.decode("utf-8", "replace").splitlines() if line.strip()]
    where = next((line.strip() for line in reversed(lines) if line.strip().startswith("File ")),
                 "")
    last = lines[-1].strip() if lines else ("killed by a signal" if code is None
                                            else f"exit {code}")
    return f"{last} ({where})" if where else last


async def worker_path(reactor: IReactorProcess, clock: IReactorTime, env: Mapping[str, str],
                      python: str = sys.executable) -> list[str]:
    """``sys.path`` as a worker with ``env`` has it (asked of a throwaway ``python -P``)."""
    run = _spawn(reactor, [python, "-P", "-c", "import json, sys; print(json.dumps(sys.path))"],
                 env, 30.0, clock)
    code, out, err = await run.ended
    if code != 0:
        raise RuntimeError(f"the workers' interpreter did not say its path: {err[-200:]!r}")
    return [str(p) for p in json.loads(out)]
