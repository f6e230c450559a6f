"""
The control API's router: Klein's decorator surface on a small route
table (:mod:`.rules`), so the daemon loads neither Klein nor werkzeug
(workers keep Klein).

As Klein: ``app = Router()`` is a class attribute bound per instance by
``__get__`` (handlers are methods that use ``self``);
``@app.route(path, methods=[...], branch=False)`` adds a route (a branch
route also takes every path below it, and the resource it returns
renders the rest); ``app.handle_errors(SomeError)(handler)`` answers
errors, handlers called as ``handler(self, request, failure)``;
``app.resource()`` is the :class:`RouterResource` that answers requests.
A handler may return bytes, str, None, a Deferred, a coroutine or an
``IResource``; a client that goes away cancels the handler's Deferred
(long-polls and event streams rely on it).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from typing import Any, cast

from twisted.internet.defer import CancelledError, Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource, getChildForRequest
from twisted.web.server import NOT_DONE_YET, Request

from turberfield_twisted.http.rules import Rule, RuleTable

__all__ = ["ErrorHandler", "Router", "RouterResource"]

#: An error handler: ``(self, request, failure)`` (``(request, failure)`` unbound).
ErrorHandler = Callable[..., Any]

_log = Logger()


def _segments(url: str) -> int:
    """How many of a path's segments a route for ``url`` consumes (Klein's count)."""
    return url.count("/") - (1 if url.endswith("/") else 0)


class Router:
    """A route table with Klein's decorators, bound per instance of the class it is on."""

    def __init__(self) -> None:
        self._table = RuleTable()
        self._error_handlers: list[tuple[tuple[type[BaseException], ...], ErrorHandler]] = []
        self._instance: Any = None
        self._bound_as: str | None = None

    def __get__(self, instance: Any, owner: type | None = None) -> Router:
        """This router bound to ``instance`` (the same routes, handlers called with it)."""
        if instance is None:
            return self
        if self._bound_as is None:
            self._bound_as = next((name for name in dir(owner)
                                   if getattr(owner, name, None) is self),
                                  f"unknown_{id(self)}")
        slot = f"__router_bound_{self._bound_as}__"
        held = getattr(instance, slot, None)
        bound: Router | None = held() if held is not None else None
        if bound is None:
            bound = object.__new__(type(self))
            bound.__dict__.update(self.__dict__)
            bound._instance = instance
            try:
                setattr(instance, slot, weakref.ref(bound))
            except AttributeError:
                pass  # an instance without a __dict__: bound again each time
        return bound

    def route(self, url: str, methods: list[str] | None = None, *, branch: bool = False,
              endpoint: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """
        Route ``url`` (``<name>``, ``<path:name>``, ``<rest:name>``; see
        :mod:`.rules`) with ``methods`` (None: any) to the decorated
        handler; with ``branch``, every path below ``url`` too.
        """
        segments = _segments(url)

        def register(f: Callable[..., Any]) -> Callable[..., Any]:
            name = endpoint or f.__name__
            if branch:
                self._table.add(Rule.make(url.rstrip("/") + "/<path:__rest__>", methods,
                                          name + "_branch", segments, f))
            self._table.add(Rule.make(url, methods, name, segments, f))
            return f

        return register

    def handle_errors(self, *errors: type[BaseException]
                      ) -> Callable[[ErrorHandler], ErrorHandler]:
        """Answer ``errors`` (every Exception if none) with the decorated handler."""
        types = errors or (Exception,)

        def register(handler: ErrorHandler) -> ErrorHandler:
            self._error_handlers.append((types, handler))
            return handler

        return register

    def iter_rules(self) -> Iterator[Rule]:
        """Every rule, in the order they were added (a branch route's catch-all first)."""
        return iter(list(self._table.rules))

    @property
    def error_handlers(self) -> list[tuple[tuple[type[BaseException], ...], ErrorHandler]]:
        """The error handlers, in the order they are tried."""
        return list(self._error_handlers)

    def match(self, path: str, method: str) -> tuple[Rule, dict[str, str]]:
        """The rule for ``method`` on ``path`` and its values (see :meth:`.RuleTable.match`)."""
        return self._table.match(path, method)

    def execute(self, rule: Rule, request: IRequest, values: dict[str, str]) -> Any:
        """Call ``rule``'s handler (with the bound instance first, if any)."""
        kwargs = {name: value for name, value in values.items() if not name.startswith("__")}
        args = () if self._instance is None else (self._instance,)
        return rule.handler(*args, request, **kwargs)

    def execute_error_handler(self, handler: ErrorHandler, request: IRequest,
                              failure: Failure) -> Any:
        """Call ``handler`` (with the bound instance first, if any)."""
        args = () if self._instance is None else (self._instance,)
        return handler(*args, request, failure)

    def resource(self) -> RouterResource:
        """The resource that answers requests by these routes."""
        return RouterResource(self)


class _StandIn:
    """What a route's answer is once a resource renders it: nothing left to write."""


_RENDERED = _StandIn()


class RouterResource(Resource):
    """Answers each request by its :class:`Router`'s routes (a leaf: it takes every path)."""

    isLeaf = True

    def __init__(self, router: Router):
        super().__init__()
        self.router = router

    @staticmethod
    def path_of(request: IRequest) -> str:
        """The path the routes see: ``postpath``'s segments, decoded (UnicodeDecodeError)."""
        if not request.postpath:
            return ""  # a branch route's own path, as ``/logs``: no rule's
        path = b"/".join(request.postpath)
        if not path.startswith(b"/"):
            path = b"/" + path
        return path.decode("utf-8")

    def render(self, request: IRequest) -> Any:
        """Route ``request``, and answer it when the handler's result comes."""
        return self._route(cast(Request, request))  # a Site's requests are Requests

    def _route(self, request: Request) -> Any:
        _Routing(self.router, request, self.path_of(request)).start()
        return NOT_DONE_YET


class _Routing:
    """
    One request on its way through a :class:`Router`: an object rather than
    nested closures, since a closure that adds itself as an errback (as
    ``failed`` does, for the next error handler) is a cycle, and a cycle
    holding the request kept every answered request's memory until the
    garbage collector's next full pass (a burst of 100 long-polls grew the
    daemon's heap by a megabyte that it then kept).
    """

    def __init__(self, router: Router, request: Request, path: str):
        self.router = router
        self.request = request
        self.path = path
        self.method = (request.method or b"").decode("ascii", "replace")
        #: The client went away or the answer was written: nothing more to write.
        self.finished = False

    def start(self) -> Deferred[Any]:
        """Route the request; answer it when the handler's result comes."""
        d = maybeDeferred(self.execute)
        d.addCallback(self.process)
        d.addErrback(self.failed, self.router.error_handlers)
        d.addCallback(self.write)
        d.addErrback(self.unwritten)
        return d

    def on_finish(self, _: object) -> None:
        self.finished = True

    def execute(self) -> Deferred[Any]:
        request = self.request
        rule, values = self.router.match(self.path, self.method)
        rest = request.postpath or []
        request.prepath = [*(request.prepath or []), *rest[:rule.segments]]
        request.postpath = rest[rule.segments:]
        request.notifyFinish().addBoth(self.on_finish)
        d = maybeDeferred(self.router.execute, rule, request, values)
        request.notifyFinish().addErrback(lambda _: d.cancel())
        return d

    def process(self, result: object) -> object:
        if IResource.providedBy(result):
            self.request.render(getChildForRequest(result, self.request))
            return _RENDERED
        return result

    def failed(self, failure: Failure, handlers: list[tuple[Any, ErrorHandler]]) -> Any:
        if self.finished:  # nobody to answer: a cancelled handler is no error
            if not failure.check(CancelledError):
                _log.failure("routing {path} after the client went away",
                             failure=failure, path=self.path[:200])
            return None
        for at, (types, handler) in enumerate(handlers):
            if failure.check(*types):
                d = maybeDeferred(self.router.execute_error_handler, handler, self.request,
                                  failure)
                d.addCallback(self.process)
                return d.addErrback(self.failed, handlers[at + 1:])
        self.request.processingFailed(failure)
        return _RENDERED

    def write(self, result: object) -> None:
        if result is _RENDERED:
            return
        if isinstance(result, str):
            result = result.encode("utf-8")
        if isinstance(result, bytes):
            self.request.write(result)
        if not self.finished:
            self.request.finish()

    def unwritten(self, failure: Failure) -> None:
        _log.failure("writing the answer to {path}", failure=failure, path=self.path[:200])
