"""
Where the CLI (and the testing kit) finds a running daemon: the API's
address and the admin token it wrote to its state directory
(:data:`~turberfield_twisted.contract.API_FILE`,
:data:`~turberfield_twisted.contract.TOKEN_FILE`).
"""

from __future__ import annotations

from pathlib import Path

from turberfield_twisted.contract import API_FILE, TOKEN_FILE
from turberfield_twisted.errors import StateDirError, StateFileError

__all__ = ["read_api"]

def read_api(state_dir: Path, url: str | None = None,
             token_file: Path | None = None) -> tuple[str, str]:
    """
    The daemon's base URL and admin token, as written to ``state_dir``:
    ``url`` instead of the directory's :data:`API_FILE` if given, the
    token from ``token_file`` instead of its :data:`TOKEN_FILE` if given.
    Raise :class:`StateFileError` if a file can't be read or holds
    nothing, :class:`StateDirError` if the URL is not ``http(s)://``.
    """
    url = url or _read_text(state_dir / API_FILE, "the API address")
    if not url.startswith(("http://", "https://")):
        raise StateDirError(
            f"the API address must start with http:// or https://, not {url[:80]!r}")
    token = _read_text(token_file or state_dir / TOKEN_FILE, "the admin token")
    return url, token


def _read_text(path: Path, what: str) -> str:
    try:
        text = path.read_text("utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise StateFileError(path, what, reason) from None
    if not text:
        raise StateFileError(path, what)
    return text
