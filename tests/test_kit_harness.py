"""
The testing kit's in-memory harness: a worker's app built as the runtime
builds it, reached with no process and no port.
"""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import task
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.internet.task import Clock

from turberfield_twisted.configtext import parse_config
from turberfield_twisted.demo.hello import Hello
from turberfield_twisted.errors import ApiError, ChangeRefused, OverrideNotAllowed
from turberfield_twisted.testing import (
    DEMO,
    EventLog,
    initiator_on_clock,
    worker_harness,
)
from turberfield_twisted.worker import Klein, WorkerContext

SECTION = {"greeting": "hello", "secret": "s3cr3t", "overridable": "greeting"}


class Poster:
    """Posts ``POST /post/NAME``'s JSON body as event NAME, after a turn of its reactor."""

    app = Klein()

    def __init__(self, ctx: WorkerContext):
        self.ctx = ctx
        self.seen: list[dict[str, str]] = []

    def on_config(self, section: dict[str, str]) -> None:
        if section.get("greeting") == "refused":
            raise ValueError("not that one")
        self.seen.append(section)

    @app.route("/post/<name>", methods=["POST"])
    async def post(self, request: Any, name: str) -> bytes:
        await task.deferLater(self.ctx.reactor, 0)
        assert self.ctx.parent is not None
        try:
            await self.ctx.parent.post_event(name, json.loads(request.content.read()))
        except ApiError as exc:
            request.setResponseCode(502)
            return str(exc).encode()
        return b"posted"

    @app.route("/config")
    async def config(self, request: Any) -> bytes:
        assert self.ctx.parent is not None
        return json.dumps(await self.ctx.parent.fetch_config()).encode()


@pytest_twisted.ensureDeferred
async def test_health_and_the_apps_routes_answer_in_memory():
    """/health names the job; the app's routes answer through a treq-style client."""
    h = worker_harness(Hello, SECTION, guid="g1")
    response = await h.client.get("/health")
    assert (response.code, await response.json()) == (200, {"status": "ok", "guid": "g1"})
    response = await h.client.post("/echo", json={"n": 1})
    assert await response.json() == {"guid": "g1", "echo": {"n": 1}}
    assert (await h.client.get("/nowhere")).code == 404


@pytest_twisted.ensureDeferred
async def test_an_answer_finished_later_arrives_with_no_flush():
    """A handler that awaits a reactor turn answers the awaiting client by itself."""
    h = worker_harness(Poster, {})
    response = await h.client.post("/post/one", json={"n": 1})
    assert (response.code, await response.text()) == (200, "posted")
    assert h.events == [("one", {"n": 1})]


@pytest_twisted.ensureDeferred
async def test_on_a_clock_the_app_answers_when_the_test_moves_time():
    """reactor=Clock(): the app's timers wait for clock.advance, and then it answers."""
    clock = Clock()
    h = worker_harness(Poster, {}, reactor=clock)
    answer = h.client.post("/post/tick", json=None)
    assert h.events == []
    clock.advance(0)
    assert h.events == [("tick", None)]
    assert (await answer).code == 200


def canonical(text: str, token: str) -> str:
    """``text`` read and written back, the job's token made a placeholder."""
    buf = io.StringIO()
    parse_config(text.replace(token, "TOKEN")).write(buf)
    return buf.getvalue()


@pytest_twisted.ensureDeferred
async def test_the_worker_reads_what_the_initiator_would_write_on_its_stdin():
    """Same module section and overrides: the harness's config is the initiator's, token aside."""
    world = initiator_on_clock({"init": {"child_port_min": 27500, "child_port_max": 27509},
                                DEMO: SECTION, "DEFAULT": {"site": "here", "token": "t"}})
    guid = await world.init.launch(DEMO, config={"greeting": "hej"})
    job = world.init.job(guid)
    sent = world.launcher.latest(guid).config.decode()
    h = worker_harness(Hello, world.init.cfg, module=DEMO, guid=guid, port=job.port,
                       overrides={"greeting": "hej"})
    buf = io.StringIO()
    h.config.write(buf)
    assert canonical(buf.getvalue(), h.token) == canonical(sent, job.token)
    assert h.config.defaults() == {"site": "here"}


def test_a_config_given_whole_keeps_default_less_its_secrets():
    """Text with [DEFAULT] and the module's section: DEFAULT reaches it, less secrets."""
    h = worker_harness(Hello, f"""
        [DEFAULT]
        site = here
        secret = no

        [{DEMO}]
        greeting = hi
        """, module=DEMO)
    assert h.config.defaults() == {"site": "here"}
    assert h.section["greeting"] == "hi" and "token" not in h.section
    assert h.config.get(h.guid, "token") == h.token


@pytest_twisted.ensureDeferred
async def test_a_klein_app_as_the_factory_and_no_initiator():
    """A Klein app itself is served; parent=False leaves ctx.parent None."""
    app = Klein()

    @app.route("/")
    def root(request: Any) -> bytes:
        return b"bare"

    h = worker_harness(app, parent=False)
    assert (h.module, h.ctx.parent, h.parent) == ("worker", None, None)
    assert await (await h.client.get("/")).text() == "bare"


def test_a_factory_that_raises_raises_and_a_config_without_the_section_is_refused():
    """The factory's error is the caller's; a config with no section for the module is too."""

    def broken(ctx: WorkerContext) -> Any:
        raise RuntimeError("cannot build")

    with pytest.raises(RuntimeError, match="cannot build"):
        worker_harness(broken)
    with pytest.raises(ValueError, match=r"no section \[some.module\]"):
        worker_harness(Hello, "[other]\nkey = 1\n", module="some.module")


@pytest_twisted.ensureDeferred
async def test_push_config_runs_on_config_with_the_initiators_rules():
    """A live change reaches on_config; a key the section does not allow is refused unsent."""
    h = worker_harness(Poster, SECTION)
    await h.push_config({"greeting": "hej"})
    assert [s["greeting"] for s in h.app.seen] == ["hej"]
    assert "secret" not in h.app.seen[0] and "token" not in h.app.seen[0]
    assert h.config.get(h.guid, "greeting") == "hej"
    with pytest.raises(OverrideNotAllowed):
        await h.push_config({"secret": "mine"})
    assert len(h.app.seen) == 1


@pytest_twisted.ensureDeferred
async def test_a_change_the_worker_refuses_is_undone():
    """on_config raising: ChangeRefused (its reason), and the next push builds on the old config."""
    h = worker_harness(Poster, SECTION)
    with pytest.raises(ChangeRefused, match="not that one"):
        await h.push_config({"greeting": "refused"})
    await h.push_config({})
    assert h.app.seen[-1]["greeting"] == "hello"


@pytest_twisted.ensureDeferred
async def test_the_stand_in_initiator_answers_as_the_real_one():
    """fetch_config gives the section less secrets; a refusing initiator is an ApiError."""
    h = worker_harness(Poster, SECTION, guid="g2")
    answer = await (await h.client.get("/config")).json()
    assert answer["guid"] == "g2" and answer["section"]["greeting"] == "hello"
    assert "secret" not in answer["section"] and "token" not in answer["section"]
    assert h.parent is not None
    h.parent.status = 503
    response = await h.client.post("/post/lost", json=None)
    assert response.code == 502 and "HTTP 503" in await response.text()
    assert h.events == []


@pytest_twisted.ensureDeferred
async def test_only_the_jobs_own_token_posts_events():
    """The stand-in initiator checks the job's token, as the daemon does."""
    h = worker_harness(Hello, SECTION)
    assert h.ctx.parent is not None
    other = type(h.ctx.parent)(h.ctx.parent.http, h.ctx.parent.url, h.guid, "not-it",
                               h.ctx.reactor)
    with pytest.raises(ApiError, match="401"):
        await other.post_event("sneaky")
    assert h.events == []


def test_an_event_log_hands_out_events_in_order_and_waits_for_the_next():
    """next() gives each event once, waits for one not yet come, and times out."""
    clock = Clock()
    log = EventLog(clock)
    log.add("a", 1)
    first, second = log.next(), log.next()
    assert first.result == ("a", 1) and not second.called
    log.add("b", None)
    assert second.result == ("b", None)
    assert log == [("a", 1), ("b", None)] and log.names() == ["a", "b"]
    late = log.next(timeout=5)
    clock.advance(5)
    assert late.called and isinstance(late.result.value, DeferredTimeout)
    late.addErrback(lambda _: None)
    log.add("c")
    assert log.next().result == ("c", None)
