"""read_config and the config helpers."""

import asyncio
import io
import os

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred

from turberfield_twisted import ConfigError, Proactor
from turberfield_twisted.configtext import job_config_text, parse_config

GOOD = b"[DEFAULT]\nshared = 1\n\n[job]\nlisten_port = 5000\ntoken = abc$$def\n"


def _run(proactor: Proactor, coro):
    return Deferred.fromFuture(asyncio.ensure_future(coro, loop=proactor.loop))


@pytest_twisted.ensureDeferred
async def test_reads_a_whole_config_from_a_pipe(reactor):
    """A config written to a pipe and closed is read, stored and returned."""
    r, w = os.pipe()
    proactor = Proactor(None, reactor=reactor)
    with os.fdopen(r, "rb") as stream:
        d = _run(proactor, proactor.read_config(stream, timeout=5))
        reactor.callLater(0, lambda: (os.write(w, GOOD), os.close(w)))
        cfg = await d
    assert cfg is proactor.cfg
    assert cfg.get("job", "listen_port") == "5000"
    assert cfg.get("job", "token") == "abc$def"
    assert cfg.get("job", "shared") == "1"


@pytest_twisted.ensureDeferred
async def test_times_out_on_a_stream_that_never_ends(reactor):
    """No EOF within the timeout raises asyncio.TimeoutError."""
    r, w = os.pipe()
    proactor = Proactor(None, reactor=reactor)
    try:
        with os.fdopen(r, "rb") as stream:
            os.write(w, b"[job]\nkey = 1\n")
            with pytest.raises(asyncio.TimeoutError):
                await _run(proactor, proactor.read_config(stream, timeout=0.2))
    finally:
        os.close(w)


@pytest_twisted.ensureDeferred
async def test_reads_a_file_object(reactor):
    """A plain in-memory stream is read as well."""
    proactor = Proactor(None, reactor=reactor)
    cfg = await _run(proactor, proactor.read_config(io.StringIO(GOOD.decode()), timeout=1))
    assert cfg.sections() == ["job"]


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("password = hunter2\n[job]\n", 1, "before the first"),
        ("[job]\nkey = 1\nthis line hunter2 is junk\n", 3, "neither"),
        ("[job]\nkey = 1\n[job]\n", 3, "appears twice"),
        ("[job]\nkey = hunter2\nkey = 2\n", 3, "appears twice"),
    ],
)
def test_malformed_config_names_the_line_not_the_value(text, line, reason):
    """A malformed config raises ConfigError with its line and no value in it."""
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="job.cfg")
    assert caught.value.line == line
    assert reason in str(caught.value)
    assert "hunter2" not in str(caught.value)
    assert f"job.cfg, line {line}" in str(caught.value)


def test_bad_interpolation_is_a_config_error():
    """A reference to a missing key is reported by key and section."""
    with pytest.raises(ConfigError, match="'key' in \\[job\\]"):
        parse_config("[job]\nkey = ${missing:value}\n")


@pytest_twisted.ensureDeferred
async def test_non_utf8_config_is_a_config_error(reactor):
    """Bytes that are not UTF-8 give a ConfigError naming the line."""
    r, w = os.pipe()
    os.write(w, b"[job]\nkey = \xff\xfe\n")
    os.close(w)
    proactor = Proactor(None, reactor=reactor)
    with os.fdopen(r, "rb") as stream, pytest.raises(ConfigError, match="line 2"):
        await _run(proactor, proactor.read_config(stream, timeout=1))


def test_job_sees_only_default_and_its_own_section():
    """A job's config text holds DEFAULT and its section, resolved; no other section."""
    cfg = parse_config(
        "[DEFAULT]\nbase = /srv\nadmin_token = nope\n"
        "[init]\ntoken = other\n[job]\npath = ${base}/x\ncost = 5$$\n"
        "[other]\ntoken = theirs\n"
    )
    text = job_config_text(cfg, "job")
    seen = parse_config(text)
    assert seen.sections() == ["job"]
    assert seen.get("job", "path") == "/srv/x"
    assert seen.get("job", "cost") == "5$"
    assert "theirs" not in text and "other" not in text and "nope" not in text


ORIGINS = (
    "# a comment\n"
    "[DEFAULT]\n"
    "base = /srv\n"
    "\n"
    "[init]\n"
    "; another comment\n"
    "listen_port = 8080\n"
    "motd = first line\n"
    "    second = line, not a key\n"
    "\n"
    "    after a blank line\n"
    "ready_timeout: 10\n"
)


def test_origin_names_the_line_of_each_key_and_header():
    """Keys and section headers have the line they were read from; comments and
    continuation lines are not keys."""
    cfg = parse_config(ORIGINS, source="init.cfg")
    assert cfg.origin("init") == ("init.cfg", 5)
    assert cfg.origin("DEFAULT", "base") == ("init.cfg", 3)
    assert cfg.origin("init", "listen_port") == ("init.cfg", 7)
    assert cfg.origin("init", "motd") == ("init.cfg", 8)
    assert cfg.origin("init", "ready_timeout") == ("init.cfg", 12)
    assert not cfg.has_option("init", "second")


def test_origin_of_an_inherited_key_is_its_default_line():
    """A key a section inherits from DEFAULT has DEFAULT's origin."""
    cfg = parse_config(ORIGINS, source="init.cfg")
    assert cfg.origin("init", "base") == ("init.cfg", 3)


def test_text_read_later_gives_the_later_origin():
    """A key read again from another source takes that source and line."""
    cfg = parse_config(ORIGINS, source="default.cfg")
    parse_config("[init]\n\nlisten_port = 9090\n", source="user.cfg", into=cfg)
    assert cfg.origin("init", "listen_port") == ("user.cfg", 3)
    assert cfg.origin("init") == ("user.cfg", 1)
    assert cfg.origin("init", "motd") == ("default.cfg", 8)


def test_keys_set_by_code_have_no_line():
    """A key set, or a section added, by code has no line; nor has an unknown key."""
    cfg = parse_config(ORIGINS, source="init.cfg")
    cfg.set("init", "listen_port", "0")
    cfg["extra"] = {"key": "1"}
    assert cfg.origin("init", "listen_port") == ("<config>", None)
    assert cfg.origin("extra", "key") == ("<config>", None)
    assert cfg.origin("extra") == ("<config>", None)
    assert cfg.origin("nowhere", "nothing") == ("<config>", None)


def test_a_removed_section_forgets_its_origins():
    """A section removed and added again by code has no line."""
    cfg = parse_config(ORIGINS, source="init.cfg")
    cfg.remove_section("init")
    cfg.add_section("init")
    cfg.set("init", "motd", "x")
    assert cfg.origin("init") == ("<config>", None)
    assert cfg.origin("init", "motd") == ("<config>", None)


def test_bad_interpolation_names_the_line_of_the_key():
    """A reference to a missing key is reported at the referring key's line."""
    with pytest.raises(ConfigError) as caught:
        parse_config("[job]\nok = 1\nkey = ${missing:value}\n", source="job.cfg")
    assert caught.value.line == 3
    assert str(caught.value).startswith("job.cfg, line 3: ")
