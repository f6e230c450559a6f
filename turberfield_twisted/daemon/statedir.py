"""
The daemon's state directory: the admin token and the API address (for
the CLI and scripts to find), the durable store, and the lock that keeps
one daemon per directory.

:class:`StateDir` opens the directory once (created 0700; refused if it is
a symbolic link, another user's, or group- or world-writable) and does
everything else relative to that open directory, with ``O_NOFOLLOW``: no
symbolic link planted in it is ever followed. :meth:`StateDir.lock` takes
an exclusive ``flock`` before anything in it is written.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from pathlib import Path

from turberfield_twisted.errors import StateDirBusy, StateDirError

__all__ = ["LOCK_FILE", "STORE_FILE", "StateDir", "write_private"]

#: Held (``flock``) by the daemon that uses the directory; holds its pid.
LOCK_FILE = "proactor.lock"


#: The durable store (:mod:`turberfield_twisted.daemon.store`).
STORE_FILE = "proactor.db"


_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC


class StateDir:
    """
    The state directory at ``path``, open. Use :meth:`open`; :meth:`close`
    when done (which also lets go of the lock).
    """

    def __init__(self, path: Path, fd: int):
        self.path = path
        #: The open directory: every file in it is reached relative to this.
        self.fd = fd
        self._lock: int | None = None

    @classmethod
    def open(cls, path: Path | str) -> StateDir:
        """
        Open (creating it 0700, and its parents, if need be) the directory
        at ``path``. Raise :class:`StateDirError` if it is a symbolic link or
        not a directory, belongs to another user, or is group- or
        world-writable.
        """
        path = Path(path)
        created = False
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            os.mkdir(path, 0o700)
            created = True
        except FileExistsError:
            pass
        except OSError as exc:
            raise StateDirError(f"cannot create the state directory {path}: "
                                f"{exc.strerror or exc}") from None
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | _NOFOLLOW)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise StateDirError(f"the state directory {path} is a symbolic link or not a"
                                    " directory: give the real directory") from None
            raise StateDirError(f"cannot open the state directory {path}: "
                                f"{exc.strerror or exc}") from None
        try:
            if created:
                os.fchmod(fd, 0o700)  # whatever the umask
            cls._check(path, os.fstat(fd))
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd)

    @staticmethod
    def _check(path: Path, st: os.stat_result) -> None:
        if st.st_uid != os.geteuid():
            raise StateDirError(f"the state directory {path} belongs to uid {st.st_uid},"
                                f" not to this user (uid {os.geteuid()})")
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o022:
            raise StateDirError(f"the state directory {path} is group- or world-writable"
                                f" (mode {mode:04o}): chmod 700 it, or choose another")

    def lock(self) -> None:
        """
        Take the directory's lock (an exclusive ``flock`` on
        :data:`LOCK_FILE`) and write this process's pid in it. Raise
        :class:`StateDirBusy` at once, changing no file, if another process
        holds it.
        """
        fd = self._open(LOCK_FILE, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise StateDirBusy(self.path, pid) from None
        except BaseException:
            os.close(fd)
            raise
        self._lock = fd
        self.note_pid()

    def note_pid(self) -> None:
        """Write this process's pid into the lock file (again, after twistd forks)."""
        if self._lock is not None:
            os.ftruncate(self._lock, 0)
            os.pwrite(self._lock, f"{os.getpid()}\n".encode("ascii"), 0)

    @property
    def locked(self) -> bool:
        """Whether this object holds the directory's lock."""
        return self._lock is not None

    def open_private(self, name: str, flags: int = os.O_RDWR | os.O_CREAT) -> int:
        """
        Open file ``name`` of the directory with ``flags``, never following
        a symbolic link, created with mode 0600 (and made so if it was
        looser). Raise :class:`StateDirError` if it is not a regular file.
        """
        fd = self._open(name, flags)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise StateDirError(f"{self.path / name} is not a regular file")
            if stat.S_IMODE(st.st_mode) & 0o077:
                os.fchmod(fd, 0o600)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _open(self, name: str, flags: int) -> int:
        try:
            return os.open(name, flags | _NOFOLLOW, 0o600, dir_fd=self.fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise StateDirError(f"{self.path / name} is a symbolic link: not followed;"
                                    " remove it") from None
            raise StateDirError(f"cannot open {self.path / name}: "
                                f"{exc.strerror or exc}") from None

    def write_private(self, name: str, text: str) -> None:
        """
        Replace file ``name`` with ``text``, mode 0600 from the start: it is
        written to a new ``.NAME.tmp`` (a file or link already there is
        removed, never followed) and renamed over ``name``.
        """
        tmp = f".{name}.tmp"
        try:
            os.unlink(tmp, dir_fd=self.fd)
        except FileNotFoundError:
            pass
        fd = self._open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, text.encode("utf-8"))
        finally:
            os.close(fd)
        os.replace(tmp, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)

    def replace(self, name: str, target: str) -> None:
        """Rename file ``name`` of the directory over ``target`` (atomically)."""
        os.replace(name, target, src_dir_fd=self.fd, dst_dir_fd=self.fd)

    def remove(self, name: str) -> None:
        """Remove file ``name`` of the directory (a link itself, never its target), if there."""
        try:
            os.unlink(name, dir_fd=self.fd)
        except FileNotFoundError:
            pass

    def lstat(self, name: str) -> os.stat_result | None:
        """File ``name``'s own status (a link's, not its target's), None if there is none."""
        try:
            return os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def close(self) -> None:
        """Close the directory and let go of its lock."""
        for fd in (self._lock, self.fd):
            if fd is not None and fd >= 0:
                os.close(fd)
        self._lock = None
        self.fd = -1


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600 (see :meth:`StateDir.write_private`)."""
    state = StateDir.open(path.parent)
    try:
        state.write_private(path.name, text)
    finally:
        state.close()
