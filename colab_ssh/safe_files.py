"""Folders and files that root reads and writes where another account may try to plant a link.

Every operation goes through an open folder descriptor (``TrustedDir``), found by walking the
path one component at a time with ``O_NOFOLLOW``. A folder is trusted only when it, and every
folder above it, belongs to root (or to the one account named as its owner) and no other
account can write to it (a sticky folder such as /tmp is allowed above it: others cannot rename
what they do not own there). A symbolic link on the way is followed only if root owns it.

Inside a trusted folder, files are never opened through a link: reads use ``O_NOFOLLOW`` and
refuse anything but a plain file of the folder's owner; writes go to a new file with a random
name created with ``O_EXCL``, get their owner and mode on the open descriptor, and are renamed
over the old name in one step, so nobody ever sees half a file or a secret with a wide mode.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

from .errors import UnsafePathError

__all__ = ["TrustedDir", "check_folder", "check_path_text", "trusted_dir"]

ROOT = 0
_MAX_LINKS = 40  # as the kernel's own limit on links followed while resolving one path
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def check_path_text(value: str, what: str) -> None:
    """Refuse paths that cannot be written into a config file as one token (sshd_config, ssh_config)."""
    bad = [ch for ch in value if not ch.isprintable() or ch.isspace()]
    if bad:
        kind = "a space" if bad[0] in (" ", "\t") else "a control character"
        raise UnsafePathError(
            f"{what} {value!r} contains {kind};"
            " sshd's config cannot hold it safely. Pick a folder whose path has neither."
        )


def _others_can_write(mode: int) -> bool:
    return bool(mode & (stat.S_IWGRP | stat.S_IWOTH))


class TrustedDir:
    """An open folder that only root, or its one owner, can change; files are used relative to it."""

    def __init__(self, path: Path, fd: int, owner: int) -> None:
        self.path = path  # canonical: no links, no '..'
        self.fd = fd
        self.owner = owner
        self.created = False  # whether subdir() made it just now

    def __enter__(self) -> TrustedDir:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __repr__(self) -> str:
        return f"TrustedDir({str(self.path)!r}, owner={self.owner})"

    # --- files -----------------------------------------------------------------------------

    def _check_file(self, name: str, st: os.stat_result) -> None:
        where = self.path / name
        if not stat.S_ISREG(st.st_mode):
            raise UnsafePathError(f"{where} is not a plain file; move it away and try again.")
        if st.st_uid not in (ROOT, self.owner) or (self.owner != ROOT and st.st_nlink != 1):
            # A hard link in a folder another account owns could name any file of root's.
            raise UnsafePathError(
                f"{where} belongs to uid {st.st_uid} or has other names (hard links);"
                " root will not read it. Remove it and try again."
            )

    def _open_nofollow(self, name: str, flags: int) -> int:
        """``name`` opened with ``flags`` (non-blocking: a FIFO cannot hang us); a link is refused."""
        try:
            return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, 0o600, dir_fd=self.fd)
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise UnsafePathError(
                    f"{self.path / name} is a symbolic link; root does not follow links there."
                    " Replace it with a plain file (or remove it) and try again."
                ) from None
            raise

    def read(self, name: str) -> bytes | None:
        """The file's bytes, or None if there is none. A link or a special file is refused."""
        try:
            fd = self._open_nofollow(name, os.O_RDONLY)
        except FileNotFoundError:
            return None
        with os.fdopen(fd, "rb") as handle:
            self._check_file(name, os.fstat(fd))
            return handle.read()

    def write(
        self, name: str, data: bytes | str, *, mode: int, uid: int = ROOT, gid: int = ROOT
    ) -> bytes | None:
        """Replace ``name`` atomically with ``data`` (owner and mode set before any byte is written).

        Returns the previous bytes (None if there was no file) so that a failed start can undo it.
        """
        previous = self.read(name)
        self.replace(name, data, mode=mode, uid=uid, gid=gid)
        return previous

    def replace(self, name: str, data: bytes | str, *, mode: int, uid: int = ROOT, gid: int = ROOT) -> None:
        """Write ``name`` without reading what was there (a link there is replaced, not followed)."""
        payload = data.encode() if isinstance(data, str) else data
        temporary = f".{name}.{os.urandom(8).hex()}.tmp"  # not `secrets`: it loads OpenSSL
        fd = os.open(
            temporary,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o600,
            dir_fd=self.fd,
        )
        try:
            with os.fdopen(fd, "wb") as handle:
                os.fchown(fd, uid, gid)
                os.fchmod(fd, mode)  # after fchown, which may clear set-id bits; umask is not applied
                handle.write(payload)
            os.rename(temporary, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        except BaseException:
            self.remove(temporary)
            raise

    def restore(
        self, name: str, previous: bytes | None, *, mode: int, uid: int = ROOT, gid: int = ROOT
    ) -> None:
        """Undo write(): put the old bytes back, or remove a file that did not exist."""
        if previous is None:
            self.remove(name)
        else:
            self.replace(name, previous, mode=mode, uid=uid, gid=gid)

    def remove(self, name: str) -> None:
        """Remove ``name`` if it is there (a link is removed itself, never its target)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=self.fd)

    def open_private(self, name: str, access: int) -> int:
        """A descriptor of ``name`` opened with ``access`` (created 0600 if missing), blocking.

        A link there is refused, and so is anything but a plain file of the folder's owner with one
        name: what we write into it must not land in a FIFO, a device or another name of some file.
        """
        fd = self._open_nofollow(name, access | os.O_CREAT)
        try:
            st = os.fstat(fd)
            self._check_file(name, st)
            if st.st_nlink != 1:
                raise UnsafePathError(f"{self.path / name} has other names (hard links); remove it.")
            os.fchmod(fd, 0o600)
            os.set_blocking(fd, True)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def open_log(self, name: str) -> int:
        """A descriptor appending to ``name`` (0600; a link there is refused), for a child's output."""
        return self.open_private(name, os.O_WRONLY | os.O_APPEND)

    def subdir(
        self, name: str, *, mode: int = 0o700, uid: int = ROOT, gid: int = ROOT, create: bool = True
    ) -> TrustedDir:
        """The folder ``name`` inside this one, created with ``mode`` if missing; it must be ``uid``'s.

        Without ``create`` a missing folder raises FileNotFoundError. ``created`` on the result
        says whether this call made it (so an undo removes only what we made).
        """
        created = False
        if create:
            try:
                os.mkdir(name, mode, dir_fd=self.fd)
                created = True
            except FileExistsError:
                pass
        fd = _open_dir(self.fd, name, self.path / name)
        try:
            if created:
                os.fchown(fd, uid, gid)
                os.fchmod(fd, mode)
            _check_dir(os.fstat(fd), self.path / name, uid, final=True)
        except BaseException:
            os.close(fd)
            raise
        folder = TrustedDir(self.path / name, fd, uid)
        folder.created = created
        return folder

    def remove_dir(self, name: str) -> None:
        """Remove the empty folder ``name`` (a link or a folder with anything in it stays)."""
        with contextlib.suppress(FileNotFoundError, NotADirectoryError, OSError):
            os.rmdir(name, dir_fd=self.fd)


def _open_dir(parent_fd: int, name: str, where: Path) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UnsafePathError(
                f"{where} is a symbolic link or not a folder; root does not follow links there."
                " Use a plain folder."
            ) from None
        raise


def _check_dir(st: os.stat_result, where: Path, owner: int, *, final: bool) -> None:
    """The folder must belong to root or ``owner``, and no one else may write to it."""
    if st.st_uid not in (ROOT, owner):
        raise UnsafePathError(
            f"{where} belongs to uid {st.st_uid}, so that account could swap what root writes there."
            " Use a folder owned by root (or the login user, for their own files)."
        )
    if final and st.st_uid != owner:
        raise UnsafePathError(
            f"{where} belongs to uid {st.st_uid}, not {owner}; fix its owner or pick another folder."
        )
    sticky = bool(st.st_mode & stat.S_ISVTX)
    if _others_can_write(st.st_mode) and (final or not sticky):
        raise UnsafePathError(
            f"{where} can be written by other accounts (mode {stat.S_IMODE(st.st_mode):o}), so they could"
            f" swap what root writes there. Run `chmod go-w {where}` or pick another folder."
        )


def _walk(
    path: Path,
    owner: int,
    create_mode: int | None,
    create_uid: int,
    create_gid: int,
    *,
    missing_ok: bool = False,
) -> TrustedDir | None:
    if not path.is_absolute():
        raise UnsafePathError(f"{path} is not an absolute path.")
    check_path_text(str(path), "The folder")
    pending = [part for part in path.parts[1:] if part not in ("", ".")]
    stack = [os.open("/", _DIR_FLAGS)]  # descriptors of the real folders walked so far
    names: list[str] = []
    links = 0
    try:
        _check_dir(os.fstat(stack[-1]), Path("/"), owner, final=False)
        while pending:
            name = pending.pop(0)
            if name == "..":
                if len(stack) > 1:
                    os.close(stack.pop())
                    names.pop()
                continue
            here = Path("/", *names, name)
            last = not pending
            try:
                st = os.lstat(name, dir_fd=stack[-1])
            except FileNotFoundError:
                if missing_ok:
                    return None  # every folder that exists on the way is trusted
                if create_mode is None:
                    raise UnsafePathError(f"{here} does not exist.") from None
                try:
                    os.mkdir(name, create_mode, dir_fd=stack[-1])
                except FileExistsError:
                    # Another start made it between our lstat and mkdir: look at what is there now
                    # (it gets every check a folder found on the way gets).
                    pending.insert(0, name)
                    continue
                fd = _open_dir(stack[-1], name, here)
                os.fchown(fd, create_uid, create_gid)
                os.fchmod(fd, create_mode)
                stack.append(fd)
                names.append(name)
                _check_dir(os.fstat(fd), here, owner, final=last)
                continue
            if stat.S_ISLNK(st.st_mode):
                links += 1
                if st.st_uid != ROOT or links > _MAX_LINKS:
                    raise UnsafePathError(
                        f"{here} is a symbolic link owned by uid {st.st_uid}; root follows only its own"
                        " links. Pass the real path of the folder."
                    )
                target = os.readlink(name, dir_fd=stack[-1])
                target_parts = [p for p in Path(target).parts if p not in ("", ".")]
                if target.startswith("/"):
                    for fd in stack[1:]:
                        os.close(fd)
                    del stack[1:]
                    names.clear()
                    target_parts = target_parts[1:]
                pending = target_parts + pending
                continue
            fd = _open_dir(stack[-1], name, here)
            stack.append(fd)
            names.append(name)
            _check_dir(os.fstat(fd), here, owner, final=last)
        if not names:
            _check_dir(os.fstat(stack[-1]), Path("/"), owner, final=True)
        result = TrustedDir(Path("/", *names), stack.pop(), owner)
    finally:
        for fd in stack:
            os.close(fd)
    return result


def trusted_dir(
    path: str | os.PathLike[str],
    *,
    owner: int = ROOT,
    create_mode: int | None = None,
    create_gid: int | None = None,
) -> TrustedDir:
    """Open the folder at ``path`` after checking it and every folder above it (see the module doc).

    Missing folders are created with ``create_mode`` (owned by ``owner``) when it is given;
    otherwise a missing folder is an error. Close the result (it is a context manager).
    """
    gid = ROOT if create_gid is None else create_gid
    found = _walk(Path(path).absolute(), owner, create_mode, owner, gid)
    assert found is not None  # noqa: S101 - only missing_ok returns None
    return found


def check_folder(path: str | os.PathLike[str], *, owner: int = ROOT) -> bool:
    """Whether the folder exists; raise UnsafePathError if it, or a folder above it, is not trusted.

    Changes nothing: for checking an argument before anything on the machine is touched.
    A missing folder is fine (False) when every folder that does exist above it is trusted.
    """
    found = _walk(Path(path).absolute(), owner, None, owner, ROOT, missing_ok=True)
    if found is None:
        return False
    found.close()
    return True
