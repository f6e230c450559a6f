"""
The daemon's state directory: where the admin token and the API address
are written for the CLI and scripts to find.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["API_FILE", "TOKEN_FILE", "default_state_dir", "read_api", "write_private"]

TOKEN_FILE = "admin.token"  # noqa: S105  (a file name, not a secret)
API_FILE = "api.url"


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/turberfield-proactor`` (``~/.local/state/...`` by default)."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(Path.home(), ".local", "state")
    return Path(base) / "turberfield-proactor"


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600, never readable by others even briefly."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode("utf-8"))
    finally:
        os.close(fd)
    os.replace(tmp, path)


def read_api(state_dir: Path) -> tuple[str, str]:
    """The daemon's base URL and admin token, as written to ``state_dir``."""
    url = (state_dir / API_FILE).read_text().strip()
    token = (state_dir / TOKEN_FILE).read_text().strip()
    return url, token
