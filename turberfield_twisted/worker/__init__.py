"""
The worker side: everything a worker process loads, and nothing of the
daemon's. A worker module takes what it needs from here::

    from turberfield_twisted.worker import Klein, WorkerContext, run_worker

- :mod:`.runtime`: :func:`run_worker`, which reads the command line and the
  config on stdin, serves the app, tells the daemon it listens, and exits on
  SIGTERM or when its lifeline ends;
- :mod:`.app`: :class:`WorkerApp` (``/health``, ``/_proactor/config`` and the
  module's own routes) and :class:`WorkerContext`, what an app is built with;
- :mod:`.parent`: :class:`ParentClient`, a worker's line back to the daemon,
  and the JSON client every caller of the daemon builds on;
- :mod:`.agent`: HTTP agents that reach a literal IP address directly;
- :mod:`.stdin`: reading a config from a stream with a timeout;
- :mod:`.proactor`: :class:`Proactor`, the seed API's base class;
- :mod:`.reactor`: what an HTTP client needs of its reactor, as a type;
- :mod:`._asyncio`: installs the asyncio reactor.

The names below are loaded on first use. ``Klein``, ``WorkerApp``,
``WorkerContext`` and ``run_worker`` come with the runtime, which installs
the asyncio reactor before it imports Klein (whose import would install the
default reactor): take ``Klein`` from here, not from ``klein``. This package
imports only itself, :mod:`turberfield_twisted.contract`,
:mod:`turberfield_twisted.configtext` and :mod:`turberfield_twisted.errors`
(checked by import-linter in ``make test``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from turberfield_twisted.contract import (
    EXIT_APP,
    EXIT_CONFIG,
    EXIT_NO_CONFIG,
    EXIT_OK,
    EXIT_PORT_IN_USE,
    EXIT_USAGE,
)
from turberfield_twisted.errors import ApiError, TransportError

__all__ = [  # a worker's exit codes (the contract's), then what it is built with
    "EXIT_APP", "EXIT_CONFIG", "EXIT_NO_CONFIG", "EXIT_OK", "EXIT_PORT_IN_USE", "EXIT_USAGE",
    "ApiError", "Klein", "ParentClient", "TransportError", "WorkerApp", "WorkerContext",
    "run_worker",
]

#: Each name loaded on first use, and the module that holds it.
_WHERE = {
    "Klein": "runtime",
    "run_worker": "runtime",
    "WorkerApp": "app",
    "WorkerContext": "app",
    "ParentClient": "parent",
}

if TYPE_CHECKING:
    from klein import Klein

    from turberfield_twisted.worker.app import WorkerApp, WorkerContext
    from turberfield_twisted.worker.parent import ParentClient
    from turberfield_twisted.worker.runtime import run_worker


def __getattr__(name: str) -> Any:
    from importlib import import_module

    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(name)
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
