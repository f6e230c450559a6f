"""check_config: the whole config checked at start, by file, line and key."""

import ipaddress
import os
import resource
import subprocess
import sys
import traceback
from importlib import resources

import pytest

from turberfield_twisted.config.policy import Limits, Restart, RestartPolicy
from turberfield_twisted.config.settings import (
    DeclaredJob,
    InitiatorSettings,
    ModuleSettings,
    Settings,
    check_config,
)
from turberfield_twisted.configtext import parse_config
from turberfield_twisted.errors import ConfigError

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
    ("proactor", "store_sync", SECRET, "must be one of normal, full"),
    ("proactor", "limit_interval", "0.000", "must be a number of seconds above 0"),
    (HELLO, "max_memory", SECRET, "must be a number of bytes above 0"),
    (HELLO, "max_memory", "00", "must be a number of bytes above 0"),
    (HELLO, "max_memory", "12X", "must be a number of bytes above 0"),
    (HELLO, "max_open_files", SECRET, "must be a whole number of 1 or more"),
    (HELLO, "max_cpu_seconds", "1.5", "must be a whole number of 1 or more"),
    (HELLO, "launcher", SECRET, "must be one of local, slurm"),
    (HELLO, "slurm_args", f"--time=5 --{SECRET}=1", "has a 2nd word that is not --name=value"),
    (HELLO, "slurm_args", f"-p {SECRET}", "has a 1st word that is not --name=value"),
    (HELLO, "slurm_args", f"--partition='{SECRET}", "is not a list of shell words"),
    (HELLO, "slurm_args", f"--partition={SECRET}", "is set, but the module's launcher is not"),
    ("job:cache", "module", SECRET, "names a module that has no config section"),
    ("job:cache", "session", "a\x7f" + SECRET, "must be at most 256 characters"),
    ("job:cache", "max_memory", SECRET, "must be a number of bytes above 0"),
    ("job:cache", "requires", SECRET, "lists a job that no [job:NAME] section declares"),
    ("job:cache", "colour", SECRET, "is not one its module lists as overridable"),
    ("job:cache", "token", SECRET, "is one the initiator sets"),
    ("job:cache", "greeting", "x" * 5000 + SECRET, "one-line value of at most 4096"),
]


@pytest.mark.parametrize(("section", "key", "value", "reason"), BAD_VALUES)
def test_a_bad_value_names_file_line_section_and_key_never_the_value(
    section, key, value, reason
):
    """Each bad value is a ConfigError at the user file's line, naming the
    section and key and saying why, without the value anywhere."""
    first = f"module = {HELLO}" if section.startswith("job:") else "pythonpath = /srv/lib"
    if section.startswith("job:") and key == "module":
        first = "session = s1"
    cfg = _user_config(f"# user settings\n[{section}]\n{first}\n{key} = {value}\n")
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


DECLARED = f"""
[{HELLO}]
overridable = greeting
max_memory = 64M
max_open_files = 256

[job:cache]
module = {HELLO}
session = s1
greeting = hi
max_memory = 100000

[job:web]
module = {HELLO}
requires = cache, cache
max_cpu_seconds = 30
"""


def test_declared_jobs_are_read_as_records():
    """[job:NAME] sections are declared jobs (not modules): module, session, overrides,
    requires and limits, and where each header is."""
    cfg = _user_config(DECLARED)
    settings = check_config(cfg, "proactor")
    assert set(settings.modules) == {HELLO}
    cache, web = settings.declared["cache"], settings.declared["web"]
    assert cache == DeclaredJob(name="cache", module=HELLO, session="s1",
                                overrides={"greeting": "hi"}, limits=Limits(max_memory=100000))
    assert (cache.source, cache.line) == ("user.cfg", 7)
    assert web == DeclaredJob(name="web", module=HELLO, requires=("cache",),
                              limits=Limits(max_cpu_seconds=30))
    assert settings.limits_for(HELLO) == Limits(max_memory=64 * 1024 ** 2, max_open_files=256)
    assert settings.limits_for(HELLO, "cache") == Limits(max_memory=100000, max_open_files=256)
    assert settings.limits_for(HELLO, "web") == Limits(max_memory=64 * 1024 ** 2,
                                                       max_open_files=256, max_cpu_seconds=30)
    assert settings.limits_for("no.such.module") == Limits()


@pytest.mark.parametrize(("text", "expected"), [
    ("1", 1), ("100000", 100000), ("64K", 65536), ("64 KiB", 65536), ("2m", 2 * 1024 ** 2),
    ("1G", 1024 ** 3), ("1GB", 1024 ** 3), ("3T", 3 * 1024 ** 4),
])
def test_max_memory_takes_bytes_or_a_unit(text, expected):
    """max_memory is bytes, or a number with K, M, G or T (powers of 1024)."""
    cfg = parse_config(f"[p]\n[m]\nmax_memory = {text}\n")
    assert check_config(cfg, "p").module("m").limits == Limits(max_memory=expected)


def test_a_cycle_of_requires_names_file_line_and_the_cycle():
    """a -> b -> c -> a is refused at a requires line, the cycle spelled out."""
    cfg = parse_config("[p]\n[m]\n[job:a]\nmodule = m\nrequires = b\n[job:b]\nmodule = m\n"
                       "requires = c\n[job:c]\nmodule = m\nrequires = a\n", source="f.cfg")
    with pytest.raises(ConfigError) as caught:
        check_config(cfg, "p")
    assert (caught.value.source, caught.value.line) == ("f.cfg", 11)
    assert "makes a cycle: a -> b -> c -> a" in str(caught.value)


def test_a_job_that_requires_itself_is_a_cycle():
    """requires = self is a cycle of one."""
    cfg = parse_config("[p]\n[m]\n[job:a]\nmodule = m\nrequires = a\n", source="f.cfg")
    with pytest.raises(ConfigError, match=r"f.cfg, line 5: .*\[job:a\] makes a cycle: a -> a"):
        check_config(cfg, "p")


@pytest.mark.parametrize(("header", "reason"), [
    ("job:bad name", "names a job whose guid is not 1 to 64"),
    ("job:", "names a job whose guid is not 1 to 64"),
    ("job:p", "names a job whose guid is the name of section [p]"),
    ("job:m", "names a job whose guid is the name of section [m]"),
])
def test_a_bad_job_name_is_refused_at_its_header(header, reason):
    """A declared job's name is a guid that is no other section's name."""
    cfg = parse_config(f"[p]\n[m]\n\n[{header}]\nmodule = m\n", source="f.cfg")
    with pytest.raises(ConfigError) as caught:
        check_config(cfg, "p")
    assert (caught.value.line, reason in str(caught.value)) == (4, True), str(caught.value)


def test_a_job_without_a_module_is_refused_at_its_header():
    """module is the one key a job section must have."""
    cfg = parse_config("[p]\n[m]\n[job:a]\nsession = s\n", source="f.cfg")
    with pytest.raises(ConfigError, match=r"f.cfg, line 3: \[job:a\] has no 'module' key"):
        check_config(cfg, "p")


def test_every_other_section_is_a_module_and_none_is_skipped():
    """
    The initiator writes no section for its jobs (a job's config is composed when it is
    sent), so none is passed over: a section that is neither the initiator's nor a
    [job:NAME] is a module's, checked as one, and a declared job may not share its name.
    """
    cfg = parse_config(f"[p]\n[m]\n[job:b]\nmodule = m\n[a]\nrestart = {SECRET}\n",
                       source="f.cfg")
    with pytest.raises(ConfigError, match=r"f.cfg, line 6: .*\[a\]"):
        check_config(cfg, "p")
    cfg = parse_config("[p]\n[m]\n[job:a]\nmodule = m\n[a]\n", source="f.cfg")
    with pytest.raises(ConfigError, match=r"names a job whose guid is the name of section"):
        check_config(cfg, "p")
    settings = check_config(parse_config("[p]\n[m]\n[job:b]\nmodule = m\n[a]\n"), "p")
    assert set(settings.modules) == {"m", "a"} and set(settings.declared) == {"b"}


def test_max_open_files_above_the_daemons_own_hard_limit_is_refused(monkeypatch):
    """A user who may not raise limits can't give a worker more open files than it has."""
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(resource, "getrlimit", lambda which: (1024, 4096))
    cfg = parse_config("[p]\n[m]\nmax_open_files = 4097\n", source="f.cfg")
    with pytest.raises(ConfigError, match=r"line 3: .*above the daemon's own hard limit \(4096\)"):
        check_config(cfg, "p")
    cfg = parse_config("[p]\n[m]\nmax_open_files = 4096\n", source="f.cfg")
    assert check_config(cfg, "p").module("m").limits.max_open_files == 4096


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
    code = ("import sys, turberfield_twisted.config.settings; "
            "print(sorted({'klein', 'treq', 'twisted.internet.reactor'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=60)
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("section", ["[turberfield_twisted.demo.hello]",
                                     "[job:one]\nmodule = turberfield_twisted.demo.hello"])
def test_rlimits_on_a_warm_module_are_taken(section):
    """A warm worker sets its rlimits on itself after its fork: a warm module may have them."""
    text = ("[turberfield_twisted.demo.hello]\nwarm = true\n"
            + (f"{section}\n" if section.startswith("[job:") else "")
            + "max_open_files = 64\n")
    settings = check_config(_user_config(text), "proactor")
    assert settings.limits_for("turberfield_twisted.demo.hello", "one").max_open_files == 64


def test_a_key_like_one_of_the_daemons_is_warned_of_not_refused():
    """A module key close to a daemon key (or an initiator-only key) warns: file, line, key."""
    cfg = parse_config("[DEFAULT]\njiter = 0.1\n[proactor]\n"
                       f"[my.module]\nrestrat = {SECRET}\nmax_restart = 3\nready_timeout = 30\n"
                       "greeting = hi\nmax_keys = 4\nmax_memry = 1\noverridable = max_memry\n",
                       source="my.cfg")
    settings = check_config(cfg, "proactor")
    assert settings.module("my.module").policy == RestartPolicy()  # nothing was taken
    passed = ": it is passed to the worker as it is"
    assert settings.warnings == (
        "my.cfg, line 2: key 'jiter' in [DEFAULT] is not one the daemon reads (did you mean"
        f" 'jitter'?){passed}",
        "my.cfg, line 5: key 'restrat' in [my.module] is not one the daemon reads (did you"
        f" mean 'restart'?){passed}",
        "my.cfg, line 6: key 'max_restart' in [my.module] is not one the daemon reads (did you"
        f" mean 'max_restarts'?){passed}",
        f"my.cfg, line 7: key 'ready_timeout' in [my.module] is read in [proactor] only{passed}",
    )  # greeting, max_keys: nothing like a daemon key; max_memry: overridable, the worker's
    assert SECRET not in "".join(settings.warnings)


def test_an_unknown_key_of_the_initiator_or_a_declared_job_says_which_it_is_like():
    """The refusal of a typo in [proactor] or [job:NAME] names the nearest key."""
    with pytest.raises(ConfigError, match=r"unknown key 'ready_timout' in \[proactor\] \(did"
                                          r" you mean 'ready_timeout'\?\)"):
        check_config(parse_config("[proactor]\nready_timout = 5\n"), "proactor")
    cfg = parse_config("[proactor]\n[my.module]\nrestart = never\n"
                       "[job:a]\nmodule = my.module\nrequries = b\n")
    with pytest.raises(ConfigError, match=r"'requries' in \[job:a\] is not one its module lists"
                                          r" .* \(did you mean 'requires'\?\)"):
        check_config(cfg, "proactor")


def test_declared_services_are_read_as_records():
    """[service:NAME] sections are services (not modules): listen, counts, overrides, limits."""
    from turberfield_twisted.config.services import DeclaredService

    cfg = _user_config(f"[service:web]\nmodule = {HELLO}\ninstances = 4\nlisten = 8000\n"
                       "surge = 2\nmax_unavailable = 1\ngreeting = hi\nmax_memory = 1M\n"
                       f"[service:v6]\nmodule = {HELLO}\nlisten = [::1]:8001\n")
    settings = check_config(cfg, "proactor")
    assert set(settings.modules) == {HELLO} and set(settings.services) == {"web", "v6"}
    web = settings.services["web"]
    assert web == DeclaredService(name="web", module=HELLO, host="127.0.0.1", port=8000,
                                  instances=4, surge=2, max_unavailable=1,
                                  overrides={"greeting": "hi"},
                                  limits=Limits(max_memory=1024 ** 2))
    assert (web.source, web.line) == ("user.cfg", 1)
    assert (settings.services["v6"].host, settings.services["v6"].instances) == ("::1", 1)
    assert settings.limits_for(HELLO, service="web").max_memory == 1024 ** 2


@pytest.mark.parametrize(("lines", "line", "reason"), [
    ("[service:a.b]\nmodule = m\nlisten = 8000\n", 4, "names a service whose name is not"),
    ("[service:m]\nmodule = m\nlisten = 8000\n", 4, "is the name of section [m]"),
    ("[service:p]\nmodule = m\nlisten = 8000\n", 4, "is the name of section [p]"),
    ("[service:w]\nlisten = 8000\n", 4, "has no 'module' key"),
    ("[service:w]\nmodule = n\nlisten = 8000\n", 5, "names a module that has no config section"),
    ("[service:w]\nmodule = m\n", 4, "has no 'listen' key"),
    ("[service:w]\nmodule = m\nlisten = 70000\n", 6, "must end with a port from 1 to 65535"),
    ("[service:w]\nmodule = m\nlisten = ::1:80\n", 6, "IPv6 address (only) in brackets"),
    ("[service:w]\nmodule = m\nlisten = host:80\n", 6, "its host an IP address"),
    ("[service:w]\nmodule = m\nlisten = 80\ninstances = 0\n", 7, "must be a whole number of 1"),
    ("[service:w]\nmodule = m\nlisten = 80\ninstances = 9\n", 7, "at most 8 (the daemon's"),
    ("[service:w]\nmodule = m\nlisten = 80\nsurge = 0\n", 7, "can't both be 0"),
    ("[service:w]\nmodule = m\nlisten = 80\nsecret = x\n", 7, "is not one its module lists"),
])
def test_a_bad_service_section_is_refused_at_its_line(lines, line, reason):
    """Each bad [service:NAME] is refused at the line of its header or its bad key."""
    cfg = parse_config(f"[p]\nmax_instances = 8\n[m]\n{lines}", source="f.cfg")
    with pytest.raises(ConfigError) as caught:
        check_config(cfg, "p")
    assert (caught.value.line, reason in str(caught.value)) == (line, True), str(caught.value)


def test_a_service_of_a_slurm_module_that_says_listen_is_refused():
    """A socket can't span hosts: a service of a module Slurm runs has no listen key."""
    cfg = parse_config("[p]\n[m]\nlauncher = slurm\n[service:w]\nmodule = m\nlisten = 80\n",
                       source="f.cfg")
    with pytest.raises(ConfigError, match=r"line 6: key 'listen' .*span hosts"):
        check_config(cfg, "p")
