"""check_config: the whole config checked at start, by file, line and key."""

import ipaddress
import subprocess
import sys
import traceback
from importlib import resources

import pytest

from turberfield_twisted.config import ConfigError, parse_config
from turberfield_twisted.settings import (
    InitiatorSettings,
    ModuleSettings,
    Settings,
    check_config,
)
from turberfield_twisted.supervision import Restart, RestartPolicy

SECRET = "s3cr3t-not-a-number"
HELLO = "turberfield_twisted.demo.hello"


def _default_config():
    """The embedded default config, read as ``tap.load_config(None)`` reads it."""
    text = resources.files("turberfield_twisted.data").joinpath("default.cfg").read_text("utf-8")
    return parse_config(text, source="default.cfg")


def _user_config(text: str):
    """The default config with ``text`` read over it as ``user.cfg``."""
    return parse_config(text, source="user.cfg", into=_default_config())


def _default_line(section: str, key: str) -> int:
    """The line of ``key`` in the embedded default config."""
    source, line = _default_config().origin(section, key)
    assert source == "default.cfg" and line is not None
    return line


def _told(exc: BaseException | None) -> str:
    """Everything the error could show: text, repr and traceback of it and its chain,
    suppressed context included."""
    told = []
    while exc is not None:
        told += [str(exc), repr(exc), *traceback.format_exception(exc)]
        exc = exc.__cause__ or exc.__context__
    return "\n".join(told)


BAD_VALUES = [
    # (section, key, value, what the message says)
    ("proactor", "ready_timeout", SECRET, "must be a number of seconds above 0"),
    ("proactor", "ready_timeout", "0.000", "must be a number of seconds above 0"),
    ("proactor", "stop_timeout", "-1", "must be a number of seconds above 0"),
    ("proactor", "relay_timeout", "inf", "must be a number of seconds above 0"),
    ("proactor", "hook_allow", f"127.0.0.0/8, {SECRET}", "is not a list of IP networks"),
    ("proactor", "child_port_min", SECRET, "must be a whole number from 1 to 65535"),
    ("proactor", "child_port_min", "30000", "child_port_min is above child_port_max"),
    ("proactor", "child_port_max", "70000", "must be a whole number from 1 to 65535"),
    ("proactor", "max_body", "-5", "must be a whole number of 1 or more"),
    ("proactor", "max_body", SECRET, "must be a whole number of 1 or more"),
    ("proactor", "max_exited", "1.5", "must be a whole number of 0 or more"),
    ("proactor", "listen_port", SECRET, "must be a whole number from 0 to 65535"),
    ("proactor", "listen_addr", SECRET, "must be an IP address or localhost"),
    ("proactor", "max_starting", "000", "must be a whole number of 1 or more"),
    ("proactor", "ready_timout", SECRET, "unknown key 'ready_timout' in [proactor]"),
    (HELLO, "restart", "sometimes", "must be one of on-failure, always, never"),
    (HELLO, "restart", SECRET, "must be one of on-failure, always, never"),
    (HELLO, "warm", SECRET, "must be true or false"),
    (HELLO, "backoff_initial", SECRET, "must be a number of seconds of 0 or more"),
    (HELLO, "backoff_cap", "-60", "must be a number of seconds of 0 or more"),
    (HELLO, "max_restarts", "1.5", "must be a whole number of 0 or more"),
    (HELLO, "jitter", SECRET, "must be a number from 0 to 1"),
    (HELLO, "jitter", "1.5", "must be a number from 0 to 1"),
    (HELLO, "listen_addr", SECRET, "must be an IP address or localhost"),
    (HELLO, "overridable", "greeting, token", "lists 'token', which the initiator sets"),
    ("my.module", "reset_after", SECRET, "must be a number of seconds of 0 or more"),
]


@pytest.mark.parametrize(("section", "key", "value", "reason"), BAD_VALUES)
def test_a_bad_value_names_file_line_section_and_key_never_the_value(
    section, key, value, reason
):
    """Each bad value is a ConfigError at the user file's line, naming the
    section and key and saying why, without the value anywhere."""
    cfg = _user_config(f"# user settings\n[{section}]\npythonpath = /srv/lib\n{key} = {value}\n")
    with pytest.raises(ConfigError) as caught:
        check_config(cfg, "proactor")
    exc = caught.value
    assert (exc.source, exc.line) == ("user.cfg", 4)
    message = str(exc)
    assert message.startswith("user.cfg, line 4: ")
    assert f"[{section}]" in message
    assert key in message
    assert reason in message
    assert value not in _told(exc)
    assert SECRET not in _told(exc)


def test_an_empty_hook_allow_list_is_refused():
    """hook_allow must name at least one network."""
    with pytest.raises(ConfigError, match="'hook_allow' in \\[proactor\\] is not a list"):
        check_config(_user_config("[proactor]\nhook_allow = ,\n"), "proactor")


def test_ports_in_the_wrong_order_name_where_both_are():
    """child_port_max set below the default child_port_min names both places."""
    cfg = _user_config("[proactor]\nchild_port_max = 27000\n")
    with pytest.raises(ConfigError) as caught:
        check_config(cfg, "proactor")
    min_line = _default_line("proactor", "child_port_min")
    assert (caught.value.source, caught.value.line) == ("default.cfg", min_line)
    assert "child_port_min is above child_port_max (child_port_max: user.cfg, line 2)" in str(
        caught.value
    )
    assert "27000" not in str(caught.value)


def test_a_key_set_by_code_is_named_without_a_line():
    """A bad value set by code has no line, and the message still names section and key."""
    cfg = _default_config()
    cfg.set("proactor", "ready_timeout", SECRET)
    with pytest.raises(ConfigError) as caught:
        check_config(cfg, "proactor")
    assert (caught.value.source, caught.value.line) == ("<config>", None)
    assert "key 'ready_timeout' in [proactor] must be a number" in str(caught.value)
    assert SECRET not in _told(caught.value)


def test_a_value_that_does_not_interpolate_is_named_without_its_text():
    """A reference set by code to a missing key is a ConfigError that quotes nothing."""
    cfg = _default_config()
    cfg.set("proactor", "pythonpath", "${nowhere:" + SECRET + "}")
    with pytest.raises(ConfigError, match="'pythonpath' in \\[proactor\\] refers to") as caught:
        check_config(cfg, "proactor")
    assert SECRET not in _told(caught.value)


def test_a_missing_initiator_section_is_named():
    """Without its [guid] section the config is refused, naming that section."""
    with pytest.raises(ConfigError, match=r"no \[init\] section"):
        check_config(_default_config(), "init")


def test_an_empty_section_gives_the_defaults():
    """An empty initiator section gives every default, and no module."""
    settings = check_config(parse_config("[proactor]\n"), "proactor")
    assert settings == Settings(initiator=InitiatorSettings())
    assert settings.initiator.hook_allow == (
        ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
    assert settings.initiator.max_starting >= 1
    assert settings.modules == {}


def test_an_empty_module_section_gives_the_default_policy():
    """A module section with none of the checked keys gets the default policy."""
    settings = check_config(parse_config("[proactor]\n[my.module]\ngreeting = hi\n"), "proactor")
    assert settings.module("my.module") == ModuleSettings(name="my.module")
    assert settings.module("other.module") is None


def test_the_embedded_default_config_passes():
    """default.cfg, as shipped, is a valid config with the demo module."""
    settings = check_config(_default_config(), "proactor")
    assert settings.initiator == InitiatorSettings(max_starting=settings.initiator.max_starting)
    hello = settings.module(HELLO)
    assert hello is not None
    assert hello.policy == RestartPolicy(restart=Restart.ON_FAILURE, backoff_initial=1.0,
                                         backoff_cap=60.0, max_restarts=5, restart_window=60.0)
    assert hello.overridable == frozenset({"greeting"})


def test_a_user_file_over_the_default_is_read_and_keeps_its_origins():
    """Keys a user file sets win and have its origin; the others keep default.cfg's."""
    cfg = _user_config("[proactor]\n\nlisten_port = 9000\nhook_allow = 10.0.0.0/8 ::1\n"
                       "admin_token = " + SECRET + "\nmax_starting = 3\n"
                       "[my.module]\nrestart = always\noverridable = a b,c\n")
    settings = check_config(cfg, "proactor")
    assert settings.initiator.listen_port == 9000
    assert settings.initiator.max_starting == 3
    assert settings.initiator.hook_allow == (
        ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1"))
    assert settings.module("my.module") == ModuleSettings(
        name="my.module", policy=RestartPolicy(restart=Restart.ALWAYS),
        overridable=frozenset({"a", "b", "c"}))
    assert cfg.origin("proactor", "listen_port") == ("user.cfg", 3)
    assert cfg.origin("proactor", "ready_timeout") == (
        "default.cfg", _default_line("proactor", "ready_timeout"))


def test_the_admin_token_is_allowed_but_not_kept():
    """admin_token is a known initiator key, and the settings never hold it."""
    cfg = parse_config(f"[proactor]\nadmin_token = {SECRET}\n")
    settings = check_config(cfg, "proactor")
    assert SECRET not in repr(settings)


def test_declared_job_sections_are_skipped():
    """[job:NAME] sections are not module sections and are not checked here."""
    cfg = _user_config(f"[job:nightly]\nmodule = {HELLO}\nrestart = {SECRET}\n")
    settings = check_config(cfg, "proactor")
    assert set(settings.modules) == {HELLO}


def test_default_keys_are_not_initiator_keys():
    """Keys in [DEFAULT] are neither unknown initiator keys nor its settings."""
    cfg = parse_config(f"[DEFAULT]\nshared = 1\nlisten_port = {SECRET}\n[proactor]\n")
    assert check_config(cfg, "proactor").initiator.listen_port == 8080


def test_a_default_key_a_module_inherits_is_checked_at_its_line():
    """A policy key in [DEFAULT] is checked for each module, at DEFAULT's line."""
    cfg = parse_config(f"[DEFAULT]\n\nrestart = {SECRET}\n[proactor]\n[my.module]\n",
                       source="user.cfg")
    with pytest.raises(ConfigError) as caught:
        check_config(cfg, "proactor")
    assert (caught.value.source, caught.value.line) == ("user.cfg", 3)
    assert "key 'restart' in [my.module] (from [DEFAULT]) must be one of" in str(caught.value)
    assert SECRET not in _told(caught.value)


def test_other_module_keys_are_the_workers_own():
    """A module section's other keys are free: any value passes."""
    cfg = parse_config(f"[proactor]\n[my.module]\nretries = {SECRET}\nlisten_port = x\n")
    assert check_config(cfg, "proactor").module("my.module") == ModuleSettings(name="my.module")


def test_the_modules_mapping_is_read_only():
    """Settings.modules cannot be changed after the check."""
    settings = check_config(_default_config(), "proactor")
    with pytest.raises(TypeError):
        settings.modules["x"] = ModuleSettings(name="x")  # type: ignore[index]


def test_importing_settings_starts_no_reactor_nor_web_library():
    """The daemon imports settings before installing its reactor: nothing here imports
    the reactor, klein or treq."""
    code = ("import sys, turberfield_twisted.settings; "
            "print(sorted({'klein', 'treq', 'twisted.internet.reactor'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=60)
    assert done.stdout.strip() == "[]"
