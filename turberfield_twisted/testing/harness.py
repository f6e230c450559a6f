"""
The in-memory worker harness: a worker's app built as the runtime builds
it, answering a treq-style client with no process and no port.

::

    h = worker_harness(KeyValue, {"greeting": "hi", "overridable": "greeting"})
    response = await h.client.get("/")
    assert response.code == 200
    await h.push_config({"greeting": "hej"})      # its on_config runs
    assert h.events == [("changed", {"key": "greeting"})]

What it shares with a launched worker: the config (the section the
initiator composes for the job, rendered to text as the worker reads
it on stdin, then read back), :class:`~turberfield_twisted.worker.WorkerApp`
(``/health``, ``/_proactor/config`` and the app under every other path),
the :class:`~turberfield_twisted.worker.WorkerContext`, a real
:class:`~turberfield_twisted.worker.parent.ParentClient` (talking to a stand-in
initiator in memory that records events and answers ``fetch_config``), and
the initiator's own override checks and config push.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Mapping
from configparser import ConfigParser
from typing import Any, cast

import attrs
from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.web.resource import IResource, Resource
from zope.interface import implementer

from turberfield_twisted.config.job_section import check_overrides, job_section
from turberfield_twisted.configtext import (
    job_config_text,
    job_config_view,
    parse_config,
    section_items,
)
from turberfield_twisted.contract import CONFIG_PATH, authorized, config_path, events_path
from turberfield_twisted.daemon.live_config import push_config
from turberfield_twisted.testing.client import WorkerClient
from turberfield_twisted.testing.configs import ConfigLike, as_config
from turberfield_twisted.testing.events import EventLog
from turberfield_twisted.worker import Klein, WorkerApp
from turberfield_twisted.worker.parent import HttpClient, ParentClient
from turberfield_twisted.worker.proactor import Proactor

__all__ = ["FakeParent", "WorkerHarness", "worker_harness"]

#: Where the harness's section says the initiator listens (the daemon's default).
PARENT = ("127.0.0.1", 8080)


def _json(request: Any, code: int, body: Any) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"Content-Type", b"application/json")
    return json.dumps(body).encode()


class FakeParent(Resource):
    """
    The initiator as a worker's :class:`~turberfield_twisted.worker.parent.ParentClient`
    sees it, in memory: it takes job ``guid``'s events (``POST``, its
    token only) into ``events`` and answers ``fetch_config`` with
    ``view()``, what the initiator shows the job of its config (DEFAULT and
    the job's section, less secrets). Set ``status`` to an error code to
    make event posts fail with it.
    """

    isLeaf = True

    def __init__(self, guid: str, token: str, events: EventLog,
                 view: Callable[[], dict[str, dict[str, str]]]):
        super().__init__()
        self.guid = guid
        self._token = token
        self.events = events
        self.view = view
        self.status = 202

    def _allowed(self, request: Any) -> bool:
        return authorized(request, self._token)

    def render_POST(self, request: Any) -> bytes:
        if request.path != events_path(self.guid).encode():
            return _json(request, 404, {"error": "no such route"})
        if not self._allowed(request):
            return _json(request, 401, {"error": "this job's token is needed"})
        try:
            body = json.loads(request.content.read())
        except ValueError:
            return _json(request, 400, {"error": "the body is not JSON"})
        if not isinstance(body, dict) or not isinstance(body.get("event"), str):
            return _json(request, 400, {"error": "event must be a short name"})
        if self.status >= 400:
            return _json(request, self.status, {"error": "refused by the test"})
        self.events.add(body["event"], body.get("data"))
        return _json(request, self.status, {"accepted": True})

    def render_GET(self, request: Any) -> bytes:
        if request.path != config_path(self.guid).encode():
            return _json(request, 404, {"error": "no such route"})
        if not self._allowed(request):
            return _json(request, 401, {"error": "this job's token is needed"})
        return _json(request, 200, {"guid": self.guid, **self.view()})


@implementer(IResource)
class _Delivering:
    """
    The worker's resource, under a StubTreq: an answer finished after the
    request was first pumped (the app awaited something) is delivered
    then, so that ``await client.get(...)`` never waits for a ``flush()``.
    """

    isLeaf = True

    def __init__(self, wrapped: Any):
        self._wrapped = wrapped
        self.stub: Any = StubTreq(self)
        self._pumping = 0

    def request(self, *args: Any, **kwargs: Any) -> Deferred[Any]:
        """treq's ``request``, in memory."""
        self._pumping += 1
        try:
            answer: Deferred[Any] = self.stub.request(*args, **kwargs)
        finally:
            self._pumping -= 1
        return answer

    def render(self, request: Any) -> Any:
        request.notifyFinish().addBoth(self._finished)
        return self._wrapped.render(request)

    def _finished(self, _: object) -> None:
        if not self._pumping:
            self.stub.flush()

    def getChildWithDefault(self, name: bytes, request: Any) -> Any:
        return self

    def putChild(self, path: bytes, child: Any) -> None:
        raise NotImplementedError


@attrs.define(eq=False)
class WorkerHarness:
    """
    A worker's app in memory: ``client`` (a
    :class:`~turberfield_twisted.testing.client.WorkerClient`) reaches its
    routes, ``/health`` and ``/_proactor/config`` included; ``app`` is the
    object its factory made, ``ctx`` its context; ``events`` what it
    posted to its initiator (``parent`` stands in for it); ``token`` the
    job token made up for it.
    """

    guid: str
    module: str
    port: int
    token: str
    app: Any
    ctx: Any
    client: WorkerClient
    events: EventLog
    parent: FakeParent | None
    served: WorkerApp = attrs.field(repr=False)
    _cfg: ConfigParser = attrs.field(repr=False)
    _render: Callable[[Mapping[str, str]], str] = attrs.field(repr=False)
    _overrides: dict[str, str] = attrs.field(factory=dict, repr=False)

    @property
    def config(self) -> Any:
        """The config the worker holds now: DEFAULT (less secrets) and its section."""
        return self.served.proactor.cfg

    @property
    def section(self) -> dict[str, str]:
        """Its own keys, less secrets, as ``ctx.section`` gives them."""
        return self.ctx.section

    async def push_config(self, changes: Mapping[str, Any], timeout: float = 10.0) -> None:
        """
        Change its overridable keys and send it its new config, as
        ``Initiator.update_config`` does: its ``on_config`` runs. Raise
        :class:`~turberfield_twisted.errors.OverrideNotAllowed` or
        :class:`~turberfield_twisted.errors.BadOverride` for a change the
        initiator would refuse, :class:`~turberfield_twisted.errors.ChangeRefused`
        if its ``on_config`` refuses it, :class:`~turberfield_twisted.errors.ConfigPushFailed`
        if it can't be sent (in both, the change is undone).
        """
        checked = check_overrides(self._cfg, self.module, dict(changes))
        before = dict(self._overrides)
        self._overrides.update(checked)
        try:
            await push_config(self.client.http, self.client.reactor, self.guid,
                              self.client.url + CONFIG_PATH, self.token,
                              self._render(self._overrides), timeout)
        except BaseException:
            self._overrides.clear()
            self._overrides.update(before)
            raise


def _reactor(reactor: Any) -> Any:
    if reactor is None:
        from twisted.internet import reactor as installed

        reactor = installed
    return reactor


def worker_harness(
    factory: Callable[..., Any] | Klein,
    config: ConfigLike = None,
    *,
    module: str | None = None,
    guid: str = "test-job",
    session: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    port: int = 0,
    parent: bool = True,
    reactor: Any = None,
) -> WorkerHarness:
    """
    Build ``factory``'s app (a class taking a
    :class:`~turberfield_twisted.worker.WorkerContext`, or a Klein app) as
    the runtime would for job ``guid`` of ``module`` (default: the
    factory's module): ``config`` is that module's section (a dict), or a
    whole config (text or a ConfigParser) holding it and maybe
    ``[DEFAULT]``; ``overrides`` are the launch's (checked as the
    initiator checks them), ``session`` its session. ``port`` is what the
    section says it listens on (nothing listens); ``parent=False`` gives it
    no initiator (``ctx.parent`` is None). ``reactor`` is ``ctx.reactor``
    and times the client's requests (default: the installed reactor).
    Raise what the factory raises.
    """
    reactor = _reactor(reactor)
    if module is None:
        module = getattr(factory, "__module__", None)
        if module is None or isinstance(factory, Klein):
            module = "worker"
    cfg = as_config(config, module)
    if not cfg.has_section(module):
        raise ValueError(f"the config has no section [{module}]: pass module= or add it")
    checked = check_overrides(cfg, module, dict(overrides or {}))
    token = secrets.token_urlsafe(16)
    events = EventLog(reactor)

    def section(changes: Mapping[str, str]) -> dict[str, str]:
        where = PARENT if parent else (PARENT[0], 0)
        return job_section(section_items(cfg, module), module, changes, port=port,
                           session=session, parent=where, token=token)

    def render(changes: Mapping[str, str]) -> str:
        return job_config_text(cfg, guid, section(changes))

    proactor = Proactor(None, reactor=reactor, cfg=parse_config(render(checked), "<stdin>"))
    fake = (FakeParent(guid, token, events, lambda: job_config_view(cfg, section(checked)))
            if parent else None)
    client = None
    if fake is not None:
        client = ParentClient(cast(HttpClient, StubTreq(fake)), "http://{}:{}".format(*PARENT),
                              guid, token, reactor)
    served = WorkerApp(guid, port, reactor, proactor)
    served.build(factory, token, client)
    delivering = _Delivering(served.app.resource())
    url = f"http://127.0.0.1:{port}" if port else "http://127.0.0.1"
    return WorkerHarness(
        guid=guid, module=module, port=port, token=token, app=served.user, ctx=served.ctx,
        client=WorkerClient(delivering, url, reactor), events=events, parent=fake,
        served=served, cfg=cfg, render=render, overrides=checked)
