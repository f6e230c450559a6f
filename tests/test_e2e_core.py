"""The core API end to end: real worker processes, real ports, real HTTP."""

import asyncio
import json
import os

import pytest
import pytest_twisted
import treq
from twisted.internet import defer

from turberfield_twisted.testing.procs import children_of, pid_alive, wait_gone

DEMO = "turberfield_twisted.demo.hello"


async def get_json(reactor, url):
    response = await treq.get(url, timeout=5, reactor=reactor)
    assert response.code == 200
    return json.loads(await response.content())


@pytest_twisted.ensureDeferred
async def test_launch_ready_and_answer(initiator, reactor):
    """A launched demo worker becomes ready and answers with its guid and config."""
    guid = await initiator.launch(DEMO, session="sess-42")
    job = await initiator.ready(guid, timeout=15)
    assert job.state == "ready"
    body = await get_json(reactor, f"http://127.0.0.1:{job.port}/")
    assert body["guid"] == guid
    assert body["session"] == "sess-42"
    assert body["config"]["greeting"] == "hello"
    assert body["config"]["listen_port"] == str(job.port)
    assert "token" not in body["config"] and "secret" not in body["config"]
    pid = job.pid
    status = await initiator.stop(guid, timeout=5)
    assert status.code == 0
    assert job.process is None and not pid_alive(pid)


@pytest_twisted.ensureDeferred
async def test_secret_reaches_worker_but_not_cmdline_or_environ(initiator, reactor):
    """A secret in the job's section and its token are on stdin only."""
    guid = await initiator.launch(DEMO, config={"api_key": "k-9f8e7d6c5b4a"})
    job = await initiator.ready(guid, timeout=15)
    with open(f"/proc/{job.pid}/cmdline", "rb") as f:
        cmdline = f.read()
    with open(f"/proc/{job.pid}/environ", "rb") as f:
        environ = f.read()
    assert cmdline.split(b"\0")[1:4] == [b"-P", b"-m", DEMO.encode()]
    for secret in (b"k-9f8e7d6c5b4a", b"s3cr3t-demo-value", job.token.encode()):
        assert secret not in cmdline
        assert secret not in environ
    body = await get_json(reactor, f"http://127.0.0.1:{job.port}/")
    assert body["config"]["api_key"] == "k-9f8e7d6c5b4a"
    await initiator.stop(guid)


@pytest_twisted.ensureDeferred
async def test_five_at_once_get_distinct_ports_and_all_stop(initiator, reactor):
    """Five launches at once: five guids, five ports, five answers; after stop, no process."""
    guids = await defer.gatherResults(
        [defer.Deferred.fromCoroutine(initiator.launch(DEMO)) for _ in range(5)]
    )
    jobs = await defer.gatherResults([initiator.ready(g, timeout=30) for g in guids])
    assert len(set(guids)) == 5
    assert len({j.port for j in jobs}) == 5
    pids = [j.pid for j in jobs]
    for job in jobs:
        body = await get_json(reactor, f"http://127.0.0.1:{job.port}/")
        assert body["guid"] == job.guid
    statuses = await defer.gatherResults([initiator.stop(g) for g in guids])
    assert [s.code for s in statuses] == [0] * 5
    await wait_gone(reactor, pids, timeout=5)
    assert children_of(os.getpid()) == []


@pytest_twisted.ensureDeferred
async def test_the_seed_pattern_reads_its_config_from_a_stream_then_launches(reactor, take_ports):
    """
    Initiator(options, loop=loop), then read_config(stream), then launch(module): as the
    seed API is used. No config is needed to build it; a missing section is named.
    """
    import argparse
    import textwrap

    from turberfield_twisted import ConfigError, Initiator

    loop = asyncio.get_running_loop()  # the reactor's: it runs this test
    init = Initiator(argparse.Namespace(guid="seed"), loop=loop)
    with pytest.raises(ConfigError, match=r"no \[seed\] section"):
        await init.launch(DEMO)
    ports = take_ports(10)
    text = textwrap.dedent(f"""
        [seed]
        listen_port = 0
        child_port_min = {ports.low}
        child_port_max = {ports.high}

        [turberfield_twisted.demo.hello]
        greeting = from the seed
        """).encode()
    read, write = os.pipe()
    with os.fdopen(read, "rb") as stream:
        reading = defer.Deferred.fromFuture(loop.create_task(init.read_config(stream)))
        os.write(write, text)
        os.close(write)
        await reading
    init.startService()
    try:
        guid = await init.launch(DEMO)
        job = await init.ready(guid, timeout=15)
        body = await get_json(reactor, f"http://127.0.0.1:{job.port}/")
        assert (body["guid"], body["config"]["greeting"]) == (guid, "from the seed")
        pid = job.pid
    finally:
        await init.stopService()
    await wait_gone(reactor, [pid])
    assert children_of(os.getpid()) == []
