"""safe_files: root never follows another account's link, nor writes where another account can swap files.

The hostile account is a uid that owns planted links and folders (root can chown to any uid; the
kernel applies the same rules whether or not /etc/passwd names it).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from colab_ssh.errors import UnsafePathError
from colab_ssh.safe_files import trusted_dir

MALLORY = 54321  # a hostile account's uid
ALICE = 54322  # the login user


@pytest.fixture
def base(tmp_path: Path) -> Path:
    tmp_path.chmod(0o755)
    return tmp_path


def test_creates_missing_folders_owned_by_root_closed_to_others(base: Path) -> None:
    with trusted_dir(base / "a" / "b", create_mode=0o700) as folder:
        assert folder.path == base / "a" / "b"
    for path in (base / "a", base / "a" / "b"):
        st = path.stat()
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o700)


def test_missing_folder_without_create_mode_is_an_error(base: Path) -> None:
    with pytest.raises(UnsafePathError, match="does not exist"):
        trusted_dir(base / "missing")


@pytest.mark.parametrize("where", ["final", "ancestor"])
def test_folder_owned_by_another_account_is_refused(base: Path, where: str) -> None:
    (base / "x" / "y").mkdir(parents=True)
    os.chown(base / "x" / ("y" if where == "final" else ""), MALLORY, MALLORY)
    with pytest.raises(UnsafePathError, match=f"uid {MALLORY}"):
        trusted_dir(base / "x" / "y")


def test_folder_writable_by_others_is_refused_but_a_sticky_ancestor_is_not(base: Path) -> None:
    (base / "shared" / "ours").mkdir(parents=True)
    (base / "shared").chmod(0o1777)  # like /tmp
    with trusted_dir(base / "shared" / "ours") as folder:
        assert folder.path.name == "ours"
    (base / "shared").chmod(0o777)
    with pytest.raises(UnsafePathError, match="chmod go-w"):
        trusted_dir(base / "shared" / "ours")
    (base / "shared").chmod(0o755)
    (base / "shared" / "ours").chmod(0o1777)  # sticky is not enough for the folder we write in
    with pytest.raises(UnsafePathError, match="written by other accounts"):
        trusted_dir(base / "shared" / "ours")


def test_a_link_owned_by_another_account_is_not_followed(base: Path) -> None:
    (base / "etc-like").mkdir()
    (base / "tmp").mkdir(mode=0o1777)
    (base / "tmp").chmod(0o1777)
    link = base / "tmp" / "keys"
    link.symlink_to(base / "etc-like")
    os.chown(link, MALLORY, MALLORY, follow_symlinks=False)
    with pytest.raises(UnsafePathError, match="symbolic link owned by uid"):
        trusted_dir(link / "sub", create_mode=0o700)
    assert not (base / "etc-like" / "sub").exists()


def test_roots_own_links_are_followed_to_the_real_folder(base: Path) -> None:
    (base / "real").mkdir()
    (base / "alias").symlink_to("real")
    (base / "up").symlink_to("real/../real")
    for name in ("alias", "up"):
        with trusted_dir(base / name) as folder:
            assert folder.path == base / "real"


def test_write_sets_mode_and_owner_and_returns_the_previous_bytes(base: Path) -> None:
    with trusted_dir(base) as folder:
        assert folder.write("secret", "one", mode=0o600) is None
        assert folder.write("secret", b"two", mode=0o640, uid=ALICE, gid=ALICE) == b"one"
    st = (base / "secret").stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (ALICE, ALICE, 0o640)
    assert (base / "secret").read_bytes() == b"two"
    assert [p.name for p in base.iterdir()] == ["secret"], "no temporary file left"


def test_a_planted_link_is_neither_read_nor_written_through(base: Path) -> None:
    home = base / "home"
    home.mkdir()
    os.chown(home, ALICE, ALICE)
    target = base / "root-only"
    target.write_text("root:$6$hash\n")
    target.chmod(0o600)
    (home / "authorized_keys").symlink_to(target)
    with trusted_dir(home, owner=ALICE) as folder:
        with pytest.raises(UnsafePathError, match="symbolic link"):
            folder.read("authorized_keys")
        with pytest.raises(UnsafePathError, match="symbolic link"):
            folder.write("authorized_keys", "ssh-ed25519 AAAA\n", mode=0o600, uid=ALICE, gid=ALICE)
        folder.replace("authorized_keys", "ssh-ed25519 AAAA\n", mode=0o600, uid=ALICE, gid=ALICE)
    assert target.read_text() == "root:$6$hash\n", "the link's target is untouched"
    assert not (home / "authorized_keys").is_symlink()


def test_a_hard_link_in_a_users_folder_is_not_read(base: Path) -> None:
    home = base / "home"
    home.mkdir()
    os.chown(home, ALICE, ALICE)
    secret = base / "secret"
    secret.write_text("private")
    os.chown(secret, ALICE, ALICE)
    os.link(secret, home / "authorized_keys")
    with trusted_dir(home, owner=ALICE) as folder, pytest.raises(UnsafePathError, match="hard links"):
        folder.read("authorized_keys")


def test_file_of_another_account_is_not_read(base: Path) -> None:
    (base / "planted").write_text("x")
    os.chown(base / "planted", MALLORY, MALLORY)
    with trusted_dir(base) as folder, pytest.raises(UnsafePathError, match=f"uid {MALLORY}"):
        folder.read("planted")


def test_log_is_0600_and_a_link_is_refused(base: Path) -> None:
    (base / "victim").write_text("keep")
    (base / "sshd.log").symlink_to(base / "victim")
    with trusted_dir(base) as folder:
        with pytest.raises(UnsafePathError, match="symbolic link"):
            folder.open_log("sshd.log")
        folder.remove("sshd.log")
        fd = folder.open_log("sshd.log")
        os.write(fd, b"line\n")
        os.close(fd)
    assert stat.S_IMODE((base / "sshd.log").stat().st_mode) == 0o600
    assert (base / "victim").read_text() == "keep"


def test_subdir_of_a_users_folder_must_be_theirs(base: Path) -> None:
    home = base / "home"
    home.mkdir()
    os.chown(home, ALICE, ALICE)
    with trusted_dir(home, owner=ALICE) as folder, folder.subdir(".ssh", uid=ALICE, gid=ALICE) as ssh_dir:
        ssh_dir.replace("authorized_keys", "k\n", mode=0o600, uid=ALICE, gid=ALICE)
    st = (home / ".ssh").stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (ALICE, 0o700)
    (home / "other").symlink_to(base)
    with trusted_dir(home, owner=ALICE) as folder, pytest.raises(UnsafePathError, match="symbolic link"):
        folder.subdir("other", uid=ALICE, gid=ALICE)


@pytest.mark.parametrize("racer", [0, MALLORY], ids=["another start of ours", "another account"])
def test_a_folder_made_by_someone_else_between_look_and_mkdir(
    base: Path, racer: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two starts on one new state folder: both see it missing, one mkdir wins. The loser must use
    # the folder the winner made (after the usual checks), not fail with FileExistsError.
    real_mkdir = os.mkdir

    def beaten_to_it(name: str, mode: int = 0o777, *, dir_fd: int | None = None) -> None:
        real_mkdir(name, 0o700, dir_fd=dir_fd)
        os.chown(name, racer, racer, dir_fd=dir_fd)
        real_mkdir(name, mode, dir_fd=dir_fd)  # raises FileExistsError, as the loser's would

    monkeypatch.setattr(os, "mkdir", beaten_to_it)
    if racer == 0:
        with trusted_dir(base / "new", create_mode=0o755) as folder:
            assert folder.path == base / "new"
    else:
        with pytest.raises(UnsafePathError, match=f"uid {MALLORY}"):
            trusted_dir(base / "new", create_mode=0o755)


def test_a_file_opened_for_writing_has_one_name_even_in_roots_folder(base: Path) -> None:
    victim = base / "victim"
    victim.write_text("keep")
    os.link(victim, base / "state.lock")
    with trusted_dir(base) as folder, pytest.raises(UnsafePathError, match="hard links"):
        folder.open_private("state.lock", os.O_RDWR)
    assert victim.read_text() == "keep"
