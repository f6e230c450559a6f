"""The state directory: created 0700, refused when unsafe, locked, no link followed."""

from __future__ import annotations

import os
import stat

import pytest

from turberfield_twisted.cli.locate import read_api
from turberfield_twisted.contract import API_FILE, TOKEN_FILE
from turberfield_twisted.daemon.statedir import LOCK_FILE, StateDir, write_private
from turberfield_twisted.errors import StateDirBusy, StateDirError, StateFileError


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_a_new_state_dir_is_made_0700_whatever_the_umask(tmp_path):
    """A missing state dir (and its parents) is created; the dir itself is 0700."""
    old = os.umask(0)
    try:
        state = StateDir.open(tmp_path / "a" / "b" / "state")
    finally:
        os.umask(old)
    try:
        assert mode(tmp_path / "a" / "b" / "state") == 0o700
    finally:
        state.close()


@pytest.mark.parametrize("bits", [0o770, 0o707, 0o777, 0o1777])
def test_a_group_or_world_writable_state_dir_is_refused(tmp_path, bits):
    """An existing dir others may write to is refused, saying so and how to fix it."""
    path = tmp_path / "state"
    path.mkdir()
    path.chmod(bits)
    with pytest.raises(StateDirError, match="group- or world-writable") as caught:
        StateDir.open(path)
    assert str(path) in str(caught.value) and "chmod 700" in str(caught.value)
    assert list(path.iterdir()) == []


def test_a_readable_but_not_writable_state_dir_is_taken(tmp_path):
    """0755 is not refused: only writable-by-others is (files in it are 0600)."""
    path = tmp_path / "state"
    path.mkdir(mode=0o755)
    path.chmod(0o755)
    StateDir.open(path).close()
    assert mode(path) == 0o755


def test_a_state_dir_that_is_a_symlink_is_refused(tmp_path):
    """The state dir itself is never reached through a symbolic link."""
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(StateDirError, match="symbolic link"):
        StateDir.open(tmp_path / "link")


def test_write_private_is_0600_and_replaces(tmp_path):
    """A file is written 0600 and replaced whole on the next write."""
    state = StateDir.open(tmp_path / "s")
    try:
        state.write_private(TOKEN_FILE, "one\n")
        state.write_private(TOKEN_FILE, "two\n")
    finally:
        state.close()
    assert (tmp_path / "s" / TOKEN_FILE).read_text() == "two\n"
    assert mode(tmp_path / "s" / TOKEN_FILE) == 0o600
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == [TOKEN_FILE]


def test_a_symlink_planted_at_the_temp_file_is_not_followed(tmp_path):
    """A link at .admin.token.tmp is removed, not written through: its target is untouched."""
    target = tmp_path / "victim"
    target.write_text("keep me\n")
    path = tmp_path / "s"
    state = StateDir.open(path)
    (path / f".{TOKEN_FILE}.tmp").symlink_to(target)
    try:
        state.write_private(TOKEN_FILE, "token\n")
    finally:
        state.close()
    assert target.read_text() == "keep me\n"
    assert (path / TOKEN_FILE).read_text() == "token\n"
    assert not (path / TOKEN_FILE).is_symlink()


def test_a_symlink_at_a_file_it_opens_is_refused(tmp_path):
    """open_private never follows a link: the error names the file."""
    target = tmp_path / "victim"
    target.write_text("keep me\n")
    state = StateDir.open(tmp_path / "s")
    (tmp_path / "s" / "proactor.db").symlink_to(target)
    try:
        with pytest.raises(StateDirError, match="symbolic link"):
            state.open_private("proactor.db")
    finally:
        state.close()
    assert target.read_text() == "keep me\n"


def test_a_looser_file_is_made_0600_when_opened(tmp_path):
    """A file of the state dir found 0644 is made 0600 as it is opened."""
    path = tmp_path / "s"
    StateDir.open(path).close()
    (path / "x").write_text("")
    (path / "x").chmod(0o644)
    state = StateDir.open(path)
    try:
        os.close(state.open_private("x"))
    finally:
        state.close()
    assert mode(path / "x") == 0o600


def test_the_lock_is_exclusive_and_names_the_holder(tmp_path):
    """A second lock fails at once with the holder's pid; the first holder's file is unchanged."""
    first = StateDir.open(tmp_path / "s")
    first.lock()
    lock_file = tmp_path / "s" / LOCK_FILE
    before = (lock_file.read_text(), lock_file.stat().st_mtime_ns, mode(lock_file))
    second = StateDir.open(tmp_path / "s")
    try:
        with pytest.raises(StateDirBusy) as caught:
            second.lock()
        assert caught.value.pid == os.getpid()
        assert f"pid {os.getpid()}" in str(caught.value)
        assert str(tmp_path / "s") in str(caught.value)
        assert (lock_file.read_text(), lock_file.stat().st_mtime_ns, mode(lock_file)) == before
        assert before[0] == f"{os.getpid()}\n" and before[2] == 0o600
    finally:
        second.close()
        first.close()
    again = StateDir.open(tmp_path / "s")
    again.lock()  # closing let go of it
    assert again.locked
    again.close()


def test_write_private_by_path_still_works(tmp_path):
    """The path form (used by scripts and tests) creates the dir and writes 0600."""
    write_private(tmp_path / "new" / TOKEN_FILE, "t\n")
    assert mode(tmp_path / "new") == 0o700
    assert mode(tmp_path / "new" / TOKEN_FILE) == 0o600


def test_read_api_reads_the_url_and_token_or_takes_them_as_given(tmp_path):
    """The two files, stripped; a given URL or token file is read instead."""
    write_private(tmp_path / "s" / API_FILE, "http://127.0.0.1:9\n")
    write_private(tmp_path / "s" / TOKEN_FILE, "tok\n")
    assert read_api(tmp_path / "s") == ("http://127.0.0.1:9", "tok")
    (tmp_path / "other").write_text(" other \n")
    assert read_api(tmp_path / "none", "https://h", tmp_path / "other") == ("https://h", "other")


def test_read_api_says_which_file_it_could_not_read_or_found_empty(tmp_path):
    """Absent: the path and why; empty: the path and what it should hold; not http: refused."""
    with pytest.raises(StateFileError) as absent:
        read_api(tmp_path / "none")
    assert (absent.value.path, absent.value.reason) == (tmp_path / "none" / API_FILE,
                                                        "No such file or directory")
    assert str(absent.value) == (f"cannot read the API address from {tmp_path}/none/{API_FILE}:"
                                 " No such file or directory")
    write_private(tmp_path / "s" / API_FILE, "http://127.0.0.1:9\n")
    write_private(tmp_path / "s" / TOKEN_FILE, "\n")
    with pytest.raises(StateFileError) as empty:
        read_api(tmp_path / "s")
    assert empty.value.reason is None
    assert str(empty.value) == f"{tmp_path}/s/{TOKEN_FILE} holds no the admin token"
    with pytest.raises(StateDirError, match="must start with http:// or https://, not 'ftp://h'"):
        read_api(tmp_path / "s", "ftp://h")
