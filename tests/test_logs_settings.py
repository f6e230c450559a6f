"""
The keys of logs on disk ([proactor]'s log_dir, log_max_bytes, log_backups,
log_format) and of the watch mode (a module's watch): read, refused when
bad (naming file, line and key), and known to the typo warnings.
"""

from __future__ import annotations

import pytest

from turberfield_twisted.config.logs import LogSettings
from turberfield_twisted.config.settings import check_config
from turberfield_twisted.configtext import parse_config
from turberfield_twisted.errors import ConfigError


def test_log_keys_and_watch_are_read() -> None:
    """The log keys fill the initiator's LogSettings; watch = true marks a module."""
    cfg = parse_config("[proactor]\nlog_dir = /var/log/p\nlog_max_bytes = 2M\nlog_backups = 7\n"
                       "log_format = json\n[my.mod]\nwatch = true\n[other.mod]\n")
    settings = check_config(cfg, "proactor")
    assert settings.initiator.logs == LogSettings("/var/log/p", 2 * 1024 ** 2, 7, "json")
    assert settings.modules["my.mod"].watch and not settings.modules["other.mod"].watch
    assert check_config(parse_config("[proactor]\n"), "proactor").initiator.logs == LogSettings()
    assert LogSettings(dir="off").off and not LogSettings().off


@pytest.mark.parametrize(("text", "says"), [
    ("[proactor]\nlog_max_bytes = 100\n", "log_max_bytes.*must be at least 4096 bytes"),
    ("[proactor]\nlog_backups = 0\n", "log_backups"),
    ("[proactor]\nlog_format = xml\n", "log_format"),
    ("[proactor]\n[my.mod]\nwatch = sometimes\n", "watch"),
    ("[proactor]\nlog_backup = 3\n", "unknown key 'log_backup'.*did you mean 'log_backups'"),
])
def test_a_bad_log_or_watch_value_is_refused_naming_its_key(text: str, says: str) -> None:
    """A bad value of a new key is a ConfigError that names the key (and file and line)."""
    with pytest.raises(ConfigError, match=says):
        check_config(parse_config(text, source="my.cfg"), "proactor")


def test_a_log_key_in_a_module_section_is_warned_of() -> None:
    """The typo warnings know the new keys: a log key in a module's section is [proactor]'s."""
    cfg = parse_config("[proactor]\n[my.mod]\nlog_dir = x\nwacth = true\n", source="my.cfg")
    warnings = "\n".join(check_config(cfg, "proactor").warnings)
    assert "'log_dir' in [my.mod] is read in [proactor] only" in warnings
    assert "'wacth' in [my.mod] is not one the daemon reads (did you mean 'watch'?)" in warnings


LAZY = ("twisted.python.logfile", "twisted.internet.inotify", "turberfield_twisted.daemon.joblogs",
        "turberfield_twisted.daemon.logfiles", "turberfield_twisted.daemon.watch",
        "turberfield_twisted.daemon.importcheck")


def test_log_machinery_and_the_watcher_are_not_imported_when_off(tmp_path) -> None:
    """With log_dir = off and no module watched, the daemon loads none of their modules."""
    import subprocess
    import sys

    (tmp_path / "p.cfg").write_text("[proactor]\nlisten_port = 0\nlog_dir = off\n[my.mod]\n")
    script = (
        "import sys\nfrom turberfield_twisted.tap import Options, makeService\n"
        "o = Options()\n"
        f"o.parseOptions(['--config', {str(tmp_path / 'p.cfg')!r}, '--state-dir',"
        f" {str(tmp_path / 'state')!r}, '--listen', 'tcp:0:interface=127.0.0.1'])\n"
        "makeService(o)\n"
        f"print(sorted(m for m in {LAZY!r} if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-P", "-c", script], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.strip() == "[]", done.stderr
