"""contrib/: the systemd unit is valid for systemd and for proactord (twistd) proactor."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from _system import absent

from turberfield_twisted.tap import Options

UNIT = Path(__file__).parent.parent / "contrib" / "turberfield-proactor.service"
#: Where the unit expects the package's venv; the test puts this one's there instead.
INSTALLED = "/opt/turberfield-proactor/bin/proactord"


def unit_keys(name: str) -> list[str]:
    return [line.split("=", 1)[1] for line in UNIT.read_text().splitlines()
            if line.startswith(f"{name}=")]


def test_systemd_analyze_verify_passes_on_the_unit(tmp_path):
    """systemd-analyze verify finds nothing to say (ExecStart pointed at this venv's proactord)."""
    tool = shutil.which("systemd-analyze")
    if tool is None:
        absent("systemd-analyze is not installed here: apt-get install systemd")
    twistd = Path(sys.executable).parent / "proactord"
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace(INSTALLED, str(twistd)))
    done = subprocess.run([tool, "verify", "--man=no", str(unit)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_the_units_command_line_is_one_twistd_proactor_takes(tmp_path):
    """Type=notify, and ExecStart's options parse as twistd proactor's."""
    assert unit_keys("Type") == ["notify"]
    [command] = unit_keys("ExecStart")
    argv = shlex.split(command)
    assert argv[0] == INSTALLED and "--nodaemon" in argv  # proactor installs asyncio itself
    options = argv[argv.index("proactor") + 1:]
    config = tmp_path / "proactor.cfg"
    config.write_text("[proactor]\n")
    options[options.index("--config") + 1] = str(config)
    state = options[options.index("--state-dir") + 1]
    assert state == "/var/lib/" + unit_keys("StateDirectory")[0]
    parsed = Options()
    parsed.parseOptions(options)
    assert parsed["state-dir"] == Path(state)
