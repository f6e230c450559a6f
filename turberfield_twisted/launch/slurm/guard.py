"""
The local guard of a worker that Slurm runs::

    python -P -m turberfield_twisted.launch.slurm.guard [--grace=SECONDS] SRUN [SRUN'S ARGUMENTS...]

``srun`` does not carry the lifeline (fd 3) to its task, and it survives
the daemon's SIGKILL. So the daemon spawns this guard, which holds the
lifeline and runs ``srun`` (with the guard's stdin, stdout and stderr:
the config goes in, the task's output comes out), and:

- when the lifeline reaches EOF (the daemon is gone, however it went), or
  on SIGTERM, SIGINT or SIGHUP (how the daemon cancels a step whose id it
  does not know yet): SIGTERM to ``srun``, which cancels its job step
  (the task is killed) and exits once the step has ended, or cancels its
  job if it is still pending; SIGKILL to ``srun`` if it is still there
  ``--grace`` seconds later (default :data:`GRACE`; Slurm then ends the
  step within seconds);
- if the guard itself is killed, ``srun`` gets SIGTERM from the kernel
  (``PR_SET_PDEATHSIG``);
- it exits as ``srun`` did: with its exit code, or by its signal.

Standard library only (and :mod:`.contract`, which is too), one process,
no threads: it costs an interpreter and nothing else.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from types import FrameType
from typing import NoReturn

from turberfield_twisted.contract import LIFELINE_FD

__all__ = ["GRACE", "drain", "main"]

#: Seconds ``srun`` has to end after SIGTERM before it gets SIGKILL.
GRACE = 30.0


_PR_SET_PDEATHSIG = 1


_ENDING = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _say(text: str) -> None:
    try:
        sys.stderr.write(f"srun guard: {text}\n")
        sys.stderr.flush()
    except OSError:
        pass  # the daemon, and its end of the pipe, may be gone


def _lifeline() -> int | None:
    try:
        if not stat.S_ISFIFO(os.fstat(LIFELINE_FD).st_mode):
            return None
    except OSError:
        return None
    os.set_inheritable(LIFELINE_FD, False)
    return LIFELINE_FD


def drain(fd: int) -> None:
    """Read what the signal handlers wrote to the non-blocking ``fd`` to wake the loop."""
    with contextlib.suppress(BlockingIOError):
        while os.read(fd, 512):
            pass


def _ended(lifeline: int) -> bool:
    """Whether the readable ``lifeline`` is at EOF (nothing is ever written to it)."""
    try:
        return not os.read(lifeline, 1)
    except BlockingIOError:
        return False
    except OSError:
        return True


def _term_when_orphaned(guard: int) -> Callable[[], None]:
    """What ``srun`` runs before its exec: SIGTERM to it when the guard dies."""
    libc = ctypes.CDLL(None, use_errno=True)

    def arm() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != guard:  # the guard died before that: act on it now
            os.kill(os.getpid(), signal.SIGTERM)

    return arm


def main(argv: list[str]) -> NoReturn:
    """Run ``argv`` (``--grace=S``, then srun and its arguments) under guard; exit as it does."""
    grace = GRACE
    if argv and argv[0].startswith("--grace="):
        try:
            grace = float(argv.pop(0).partition("=")[2])
        except ValueError:
            argv = []
    if not argv:
        _say("usage: python -m turberfield_twisted.launch.slurm.guard"
             " [--grace=SECONDS] SRUN [ARGS...]")
        raise SystemExit(64)
    wake_r, wake_w = os.pipe()
    for fd in (wake_r, wake_w):
        os.set_blocking(fd, False)
    signal.set_wakeup_fd(wake_w)
    asked: list[str] = []

    def ending(signum: int, frame: FrameType | None) -> None:
        asked.append(signal.Signals(signum).name)

    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    for sig in _ENDING:
        signal.signal(sig, ending)
    lifeline = _lifeline()
    try:
        srun = subprocess.Popen(argv, close_fds=True,
                                preexec_fn=_term_when_orphaned(os.getpid()))
    except OSError as exc:
        _say(f"could not start {argv[0]}: {exc.strerror or exc}")
        raise SystemExit(70) from None
    deadline: float | None = None
    while srun.poll() is None:
        if asked and deadline is None:
            _say(f"{asked[0]}: cancelling the job step")
            srun.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + grace
        timeout = None if deadline is None else deadline - time.monotonic()
        if timeout is not None and timeout <= 0:
            _say(f"srun still there {grace:g}s after SIGTERM: SIGKILL")
            srun.kill()
            srun.wait()
            break
        readers = [wake_r] if lifeline is None else [wake_r, lifeline]
        ready, _, _ = select.select(readers, [], [], timeout)
        if wake_r in ready:
            drain(wake_r)
        if lifeline is not None and lifeline in ready and _ended(lifeline):
            lifeline = None
            asked.append("lifeline lost (the daemon is gone)")
    code = srun.returncode
    if code < 0:  # killed by a signal: end the same way
        if -code != signal.SIGKILL:
            signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    raise SystemExit(code)


if __name__ == "__main__":
    main(sys.argv[1:])
