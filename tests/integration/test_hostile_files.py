"""Root never follows a link, nor writes where another account controls (issue 9, items 1-3 and 7).

A hostile account (a uid root chowns planted links and folders to: the kernel applies the same
rules whether or not /etc/passwd names it) plants a symbolic link at every name colab_ssh writes:
in the state folder, in host_keys_dir and in the login user's ~/.ssh. Each link points at a file
only root may change (or at a name where no file may appear). Whatever start_ssh() does, with a
real sshd and the real client, those files stay as they were, and a refusal is a clear
ColabSSHError that changed nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

import colab_ssh.start_steps as start_steps_module
from colab_ssh import ColabSSHError, InvalidArgumentError, SshdStartError, start_ssh, stop_ssh
from colab_ssh.errors import UnsafePathError
from colab_ssh.paths import Paths
from colab_ssh.sshd_config import SshdSettings, render_sshd_config
from colab_ssh.supervisor_state import StateFiles

from ..support.host import ClientKey, SshClient, home_of, make_client_key, our_processes
from ..support.stand_ins import NgrokCloud

MALLORY = 54321  # the hostile account's uid


@dataclass
class Bait:
    """Files in a root-only folder: planted links point at them, or at names where nothing may appear."""

    folder: Path

    def __post_init__(self) -> None:
        self.folder.mkdir(mode=0o700)
        self.count = 0

    def target(self, *, exists: bool) -> Path:
        self.count += 1
        path = self.folder / f"target-{self.count}"
        if exists:
            path.write_bytes(f"root's file {self.count}\n".encode())
            path.chmod(0o600)
        return path

    def folder_target(self) -> Path:
        self.count += 1
        path = self.folder / f"dir-{self.count}"
        path.mkdir(mode=0o700)
        (path / "inside").write_text("root's\n")
        return path

    def snapshot(self) -> dict[str, tuple[bytes | None, int, int]]:
        found = {}
        for path in sorted(self.folder.rglob("*")):
            info = path.lstat()
            data = path.read_bytes() if stat.S_ISREG(info.st_mode) else None
            found[str(path.relative_to(self.folder))] = (data, stat.S_IMODE(info.st_mode), info.st_uid)
        return found


@pytest.fixture
def bait(tmp_path: Path) -> Bait:
    return Bait(tmp_path / "root-only")


def plant(link: Path, target: Path, uid: int = MALLORY) -> None:
    link.symlink_to(target)
    os.lchown(link, uid, uid)


def state_file_names(paths: Paths) -> list[Path]:
    """Every name colab_ssh writes in the state folder, from the code: Paths, cloudflared's, the CLI's.

    Also the predictable temporary names the old writer used (".<name>.<pid>.tmp").
    """
    from_paths = {getattr(paths, name) for name in dir(Paths) if isinstance(getattr(Paths, name), property)}
    files = StateFiles(paths.state_dir)
    names = {
        *from_paths,
        paths.cloudflared_log,
        paths.cloudflared_pid,
        files.pid,
        files.log,
        files.connection,
        files.error,
        files.lock,
    }
    names = {path for path in names if isinstance(path, Path) and path.parent == paths.state_dir}
    names |= {path.with_name(f".{path.name}.{os.getpid()}.tmp") for path in set(names)}
    return sorted(names)


def host_key_names(folder: Path) -> list[Path]:
    names = [folder / f"ssh_host_{kind}_key" for kind in ("ed25519", "ecdsa", "rsa")]
    return names + [path.with_suffix(".pub") for path in names]


def start_until_it_stops_refusing(
    planted: dict[Path, Path], bait: Bait, state_dir: Path, **arguments: object
) -> tuple[object, list[Path]]:
    """start_ssh() with links at every name; each refusal must name one link and change nothing.

    The refused link is then removed and the start tried again, so every name the start
    touches is met once. Returns the connection and the links that were refused.
    """
    before = bait.snapshot()
    refused: list[Path] = []
    for _attempt in range(len(planted) + 1):
        try:
            connection = start_ssh(state_dir=state_dir, quiet=True, **arguments)
        except UnsafePathError as error:
            named = [link for link in planted if str(link) in str(error) and link.is_symlink()]
            assert named, f"the refusal names none of the planted links: {error}"
            assert "link" in str(error)
            assert bait.snapshot() == before
            assert our_processes(state_dir) == []
            named[0].unlink()
            refused.append(named[0])
            continue
        assert bait.snapshot() == before
        return connection, refused
    raise AssertionError("start_ssh() kept refusing")


def test_links_at_every_name_in_the_state_folder_and_host_keys_dir_are_never_followed(
    test_user, port, state_dir, tmp_path, bait, client_key: ClientKey, ngrok_cloud: NgrokCloud, ssh: SshClient
):
    # A state folder of root's that another account could write to earlier, and a host_keys_dir,
    # with a link at every name: to root's files, to names that must not appear, to a root folder.
    state_dir.mkdir(mode=0o755)
    keys_dir = tmp_path / "keys"
    keys_dir.mkdir(mode=0o700)
    planted: dict[Path, Path] = {}
    for index, link in enumerate([*state_file_names(Paths(state_dir=state_dir)), *host_key_names(keys_dir)]):
        target = bait.folder_target() if link.name == "host_keys" else bait.target(exists=index % 2 == 0)
        plant(link, target)
        planted[link] = target
    before = bait.snapshot()
    token = ngrok_cloud.add_account("tok_hostile_1")

    connection, refused = start_until_it_stops_refusing(
        planted,
        bait,
        state_dir,
        tunnel="ngrok",
        authtoken=token,
        port=port,
        user=test_user,
        public_key=client_key.public_line,
        host_keys_dir=keys_dir,
    )

    # Every file the start writes was met: each link there was refused, none followed.
    # (A link at a pid file names no process of ours: it is removed, the link itself, and the
    # start goes on; the other names are refused one by one.)
    touched = {"sshd_config", "sshd.log", "host_keys", "ngrok.yml", "ngrok.log", "ngrok-agent"}
    touched |= {"ssh_host_ed25519_key", "ssh_host_ed25519_key.pub"}
    assert touched <= {link.name for link in refused}
    result = ssh.run_with_key(connection, "id -un", client_key.private)  # type: ignore[arg-type]
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == test_user
    for name in ("sshd_config", "sshd.log", "sshd.pid", "ngrok.yml", "ngrok.log", "ngrok.pid"):
        info = (state_dir / name).lstat()
        assert stat.S_ISREG(info.st_mode) and (info.st_uid, stat.S_IMODE(info.st_mode)) == (0, 0o600), name
    stop_ssh(state_dir=state_dir)
    assert bait.snapshot() == before  # the targets, and no file at a dangling link's target


def test_the_state_folder_is_made_root_owned_0755(test_user, port, state_dir):
    start_ssh(tunnel="none", port=port, user=test_user, state_dir=state_dir, quiet=True)
    info = state_dir.stat()
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (0, 0o755)
    for path in state_dir.iterdir():
        if path.is_file():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name


# --- the login user's ~/.ssh ------------------------------------------------------------------


def _ssh_dir_is_a_link_to_a_root_folder(home: Path, bait: Bait, uid: int) -> None:
    plant(home / ".ssh", bait.folder_target(), uid)


def _authorized_keys_is_a_link_to_a_root_file(home: Path, bait: Bait, uid: int) -> None:
    _own_ssh_dir(home, uid)
    plant(home / ".ssh" / "authorized_keys", bait.target(exists=True), uid)


def _authorized_keys_is_a_dangling_link(home: Path, bait: Bait, uid: int) -> None:
    _own_ssh_dir(home, uid)
    plant(home / ".ssh" / "authorized_keys", bait.target(exists=False), uid)


def _authorized_keys_is_a_hard_link_to_a_root_file(home: Path, bait: Bait, uid: int) -> None:
    _own_ssh_dir(home, uid)
    os.link(bait.target(exists=True), home / ".ssh" / "authorized_keys")


def _ssh_dir_belongs_to_root(home: Path, bait: Bait, uid: int) -> None:
    (home / ".ssh").mkdir(mode=0o700)


def _ssh_dir_belongs_to_another_account(home: Path, bait: Bait, uid: int) -> None:
    (home / ".ssh").mkdir(mode=0o700)
    os.chown(home / ".ssh", MALLORY, MALLORY)


def _ssh_dir_is_writable_by_others(home: Path, bait: Bait, uid: int) -> None:
    _own_ssh_dir(home, uid)
    (home / ".ssh").chmod(0o777)


def _own_ssh_dir(home: Path, uid: int) -> None:
    (home / ".ssh").mkdir(mode=0o700)
    os.chown(home / ".ssh", uid, uid)


REFUSED_HOMES = [
    (_ssh_dir_is_a_link_to_a_root_folder, "symbolic link"),
    (_authorized_keys_is_a_link_to_a_root_file, "symbolic link"),
    (_authorized_keys_is_a_dangling_link, "symbolic link"),
    (_authorized_keys_is_a_hard_link_to_a_root_file, "hard link"),
    (_ssh_dir_belongs_to_root, "belongs to uid 0"),
    (_ssh_dir_belongs_to_another_account, f"belongs to uid {MALLORY}"),
    (_ssh_dir_is_writable_by_others, "written by other accounts"),
]


@pytest.mark.parametrize(
    ("prepare", "message"), REFUSED_HOMES, ids=[p.__name__[1:] for p, _ in REFUSED_HOMES]
)
def test_a_users_ssh_folder_that_could_redirect_roots_writes_is_refused(
    prepare, message, test_user, port, state_dir, bait, client_key: ClientKey
):
    home = home_of(test_user)
    prepare(home, bait, home.stat().st_uid)
    before = bait.snapshot()

    with pytest.raises(UnsafePathError, match=message):
        start_ssh(
            tunnel="none", port=port, user=test_user, state_dir=state_dir, quiet=True,
            public_key=client_key.public_line,
        )  # fmt: skip

    assert bait.snapshot() == before
    assert our_processes(state_dir) == []
    assert not (state_dir / "sshd_config").exists()


def test_a_link_at_the_old_predictable_temporary_name_is_not_followed(
    test_user, port, state_dir, bait, client_key: ClientKey, ssh: SshClient
):
    home = home_of(test_user)
    uid = home.stat().st_uid
    _own_ssh_dir(home, uid)
    for target in (bait.target(exists=True), bait.target(exists=False)):
        plant(home / ".ssh" / f".authorized_keys.{os.getpid()}.tmp", target, uid)
        before = bait.snapshot()
        connection = start_ssh(
            tunnel="none", port=port, user=test_user, state_dir=state_dir, quiet=True,
            public_key=client_key.public_line,
        )  # fmt: skip
        assert bait.snapshot() == before
        assert ssh.run_with_key(connection, "true", client_key.private).returncode == 0
        stop_ssh()
        (home / ".ssh" / f".authorized_keys.{os.getpid()}.tmp").unlink()
    authorized = (home / ".ssh" / "authorized_keys").lstat()
    assert (authorized.st_uid, stat.S_IMODE(authorized.st_mode)) == (uid, 0o600)


@pytest.mark.parametrize("had_ssh_dir", [False, True])
def test_a_failed_start_puts_the_users_ssh_folder_back(
    had_ssh_dir, test_user, port, state_dir, client_key: ClientKey, monkeypatch
):
    # Without recursing through a folder the user controls: only the file we wrote goes, and
    # ~/.ssh only if we made it (and it is empty again).
    home = home_of(test_user)
    uid = home.stat().st_uid
    if had_ssh_dir:
        _own_ssh_dir(home, uid)
        for name, text in (("config", "Host *\n"), ("authorized_keys", "# mine\n")):
            (home / ".ssh" / name).write_text(text)
            os.chown(home / ".ssh" / name, uid, uid)

    def unbindable(settings: SshdSettings) -> str:
        # Passes `sshd -t` (which binds nothing) but fails to bind: an address this machine lacks.
        return render_sshd_config(settings) + "ListenAddress 198.51.100.77\n"

    monkeypatch.setattr(start_steps_module, "render_sshd_config", unbindable)
    with pytest.raises(SshdStartError):
        start_ssh(
            tunnel="none", port=port, user=test_user, state_dir=state_dir, quiet=True,
            public_key=client_key.public_line,
        )  # fmt: skip

    if had_ssh_dir:
        assert sorted(p.name for p in (home / ".ssh").iterdir()) == ["authorized_keys", "config"]
        assert (home / ".ssh" / "authorized_keys").read_text() == "# mine\n"
        assert (home / ".ssh" / "config").read_text() == "Host *\n"
    else:
        assert not (home / ".ssh").exists()


# --- every path argument ------------------------------------------------------------------------


def _folder_of(owner: int, mode: int):
    def make(tmp: Path) -> Path:
        path = tmp / f"folder-{owner}-{mode:o}"
        path.mkdir(mode=mode)
        path.chmod(mode)
        os.chown(path, owner, owner)
        return path

    return make


def _under_foreign_folder(tmp: Path) -> Path:
    parent = tmp / "foreign-parent"
    parent.mkdir(mode=0o755)
    os.chown(parent, MALLORY, MALLORY)
    return parent / "child"


def _through_foreign_link(tmp: Path) -> Path:
    real = tmp / "real-folder"
    real.mkdir(mode=0o700)
    plant(tmp / "foreign-link", real)
    return tmp / "foreign-link"


FOLDER_VARIANTS = [
    ("newline", lambda tmp: str(tmp / "a\nAuthorizedKeysFile /tmp/k"), UnsafePathError, "control character"),
    ("carriage return", lambda tmp: str(tmp / "a\rb"), UnsafePathError, "control character"),
    ("space", lambda tmp: str(tmp / "a b"), UnsafePathError, "a space"),
    ("tab", lambda tmp: str(tmp / "a\tb"), UnsafePathError, "a space"),
    ("escape", lambda tmp: str(tmp / "a\x1bb"), UnsafePathError, "control character"),
    ("NUL", lambda tmp: str(tmp / "a\0b"), InvalidArgumentError, "NUL"),
    ("owned by another account", _folder_of(MALLORY, 0o700), UnsafePathError, f"uid {MALLORY}"),
    ("world-writable", _folder_of(0, 0o777), UnsafePathError, "written by other accounts"),
    ("group-writable", _folder_of(0, 0o775), UnsafePathError, "written by other accounts"),
    ("sticky and world-writable", _folder_of(0, 0o1777), UnsafePathError, "written by other accounts"),
    ("below a folder of another account", _under_foreign_folder, UnsafePathError, f"uid {MALLORY}"),
    ("through another account's link", _through_foreign_link, UnsafePathError, "symbolic link"),
]


@pytest.mark.parametrize("argument", ["state_dir", "host_keys_dir"])
@pytest.mark.parametrize(
    ("variant", "make", "error", "message"), FOLDER_VARIANTS, ids=[v[0] for v in FOLDER_VARIANTS]
)
def test_every_folder_argument_is_refused_before_anything_changes(
    argument, variant, make, error, message, test_user, port, state_dir, tmp_path
):
    folder = make(tmp_path)
    arguments: dict[str, object] = {"state_dir": state_dir, argument: folder}
    before = sorted(tmp_path.rglob("*"))

    with pytest.raises(error, match=message) as raised:
        start_ssh(tunnel="none", port=port, user=test_user, quiet=True, **arguments)

    assert isinstance(raised.value, ColabSSHError)
    assert argument in str(raised.value)
    assert sorted(tmp_path.rglob("*")) == before  # nothing made, not even the state folder
    assert our_processes(state_dir) == []


# --- public_key files ---------------------------------------------------------------------------

SHADOW_LIKE = "root:$y$j9T$SECRETSALTxyz$SECRETHASHabcdefghij:19000:0:99999:7:::\nbin:*:19000::::::\n"


def _secret_words(text: str) -> set[str]:
    return {word for line in text.splitlines() for word in line.split(":") if len(word) > 3}


@pytest.mark.parametrize("how", ["file", "link owned by another account"])
def test_a_rejected_key_file_is_never_echoed(how, test_user, port, state_dir, tmp_path):
    secret = tmp_path / "shadow-like"
    secret.write_text(SHADOW_LIKE)
    secret.chmod(0o600)
    argument = secret
    if how != "file":
        argument = tmp_path / "key.pub"
        plant(argument, secret)

    with pytest.raises(InvalidArgumentError) as raised:
        start_ssh(
            tunnel="none", port=port, user=test_user, state_dir=state_dir, quiet=True, public_key=argument
        )

    shown = "".join(str(item) for item in (raised.value, raised.value.__cause__, raised.value.__context__))
    assert not any(word in shown for word in _secret_words(SHADOW_LIKE) - {"root"}), shown
    assert "root:" not in shown


def test_etc_shadow_as_a_public_key_shows_no_part_of_it(test_user, port, state_dir):
    first_line = Path("/etc/shadow").read_text().splitlines()[0]
    with pytest.raises(InvalidArgumentError) as raised:
        start_ssh(
            tunnel="none",
            port=port,
            user=test_user,
            state_dir=state_dir,
            quiet=True,
            public_key="/etc/shadow",
        )
    assert first_line[:40] not in str(raised.value) and "root:" not in str(raised.value)


def test_a_fifo_or_a_huge_file_as_a_public_key_is_refused_without_waiting(
    test_user, port, state_dir, tmp_path
):
    fifo = tmp_path / "key.pub"
    os.mkfifo(fifo)
    with pytest.raises(InvalidArgumentError, match="not a plain file"):
        start_ssh(tunnel="none", port=port, user=test_user, state_dir=state_dir, quiet=True, public_key=fifo)
    huge = tmp_path / "huge.pub"
    huge.write_bytes(b"x" * (1 << 20))
    with pytest.raises(InvalidArgumentError, match="larger than"):
        start_ssh(tunnel="none", port=port, user=test_user, state_dir=state_dir, quiet=True, public_key=huge)


# --- the revived sshd runs our config, not a swapped one -----------------------------------------


def test_a_revived_sshd_runs_the_config_we_wrote_not_a_replaced_one(
    test_user, port, state_dir, tmp_path, client_key: ClientKey, ssh: SshClient
):
    connection = start_ssh(
        tunnel="none", port=port, user=test_user, state_dir=state_dir, quiet=True,
        public_key=client_key.public_line, monitor_interval=None,
    )  # fmt: skip
    written = (state_dir / "sshd_config").read_bytes()
    # Someone swaps the config for one that trusts their key (in a folder sshd's StrictModes
    # accepts: root's all the way up), then sshd dies...
    intruder = make_client_key(tmp_path / "intruder")
    keys_folder = Path(tempfile.mkdtemp(dir="/run"))
    try:
        keys_folder.chmod(0o755)
        (keys_folder / "their_keys").write_text(intruder.public_line + "\n")
        (keys_folder / "their_keys").chmod(0o644)
        swapped = written.replace(
            b"PubkeyAuthentication yes", f"AuthorizedKeysFile {keys_folder / 'their_keys'}".encode()
        )
        assert swapped != written
        (state_dir / "sshd_config").write_bytes(swapped)
        listener = json.loads((state_dir / "sshd.pid").read_text())["pid"]
        os.kill(listener, signal.SIGKILL)
        os.waitpid(listener, 0)  # our child: reaped here, so the session sees it dead

        # ...and is brought back (a re-run does what the monitor does).
        again = start_ssh(
            tunnel="none", port=port, user=test_user, state_dir=state_dir, quiet=True,
            public_key=client_key.public_line, monitor_interval=None,
        )  # fmt: skip

        assert (state_dir / "sshd_config").read_bytes() == written
        assert ssh.run_with_key(again, "true", intruder.private).returncode != 0
        assert ssh.run_with_key(connection, "true", client_key.private).returncode == 0
    finally:
        shutil.rmtree(keys_folder)


# --- one canonical folder everywhere --------------------------------------------------------------


def test_stop_with_tilde_or_through_the_real_path_finds_what_start_began(
    test_user, port, tmp_path, monkeypatch
):
    home = tmp_path / "home"
    (home / "real").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    (home / "linked").symlink_to(home / "real")  # root's own link: followed

    try:
        start_ssh(tunnel="none", port=port, user=test_user, state_dir=home / "linked", quiet=True)
        assert our_processes(home / "real") != []
        stop_ssh(state_dir=home / "real")
        assert our_processes(home / "real") == []

        start_ssh(tunnel="none", port=port, user=test_user, state_dir=home / "real", quiet=True)
        stop_ssh(state_dir="~/linked")
        assert our_processes(home / "real") == []
    finally:
        stop_ssh()
        for pid in our_processes(home / "real"):
            os.kill(pid, signal.SIGKILL)


# --- a state folder on a read-only disk ----------------------------------------------------------


@pytest.fixture
def read_only_folder(tmp_path: Path):
    folder = tmp_path / "ro"
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m,mode=0755", "tmpfs", str(folder)], check=True)
    try:
        yield folder
    finally:
        try:
            with contextlib.suppress(ColabSSHError):  # nothing started; stop cannot lock there either
                stop_ssh(state_dir=folder)
        finally:
            subprocess.run(["umount", str(folder)], check=True)


def test_a_read_only_state_folder_is_a_clear_error(test_user, port, read_only_folder):
    # (The first file written there is the start lock, then sshd_config: either says so.)
    with pytest.raises(ColabSSHError, match=r"(?i)(could not|cannot).*Read-only file system.*state_dir="):
        start_ssh(tunnel="none", port=port, user=test_user, state_dir=read_only_folder, quiet=True)
    assert our_processes(read_only_folder) == []


def test_the_command_line_resolves_a_relative_state_dir_once(test_user, port, state_dir, tmp_path):
    # The supervisor runs in /, so "state" must mean tmp_path/state for it too (the old code
    # looked for it in / and `start` waited for a connection file that never came).
    def cli(*arguments: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "colab_ssh", *map(str, arguments)],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path,
        )  # fmt: skip

    try:
        started = cli(
            "start", "--tunnel", "none", "--port", port, "--user", test_user, "--state-dir", "state"
        )
        assert started.returncode == 0, started.stderr
        assert (state_dir / "connection.json").exists()
        status = cli("status", "--state-dir", "./state/../state")
        assert status.returncode == 0, status.stdout + status.stderr
    finally:
        stopped = cli("stop", "--state-dir", state_dir)
    assert stopped.returncode == 0 and stopped.stdout.strip() == "Stopped."


@pytest.mark.parametrize("case", ["dangling link at the private key", "pub link to a root file"])
def test_the_host_key_links_from_the_issue(case, test_user, port, state_dir, tmp_path, bait):
    # The issue's two findings: a dangling link made root create a file holding the private host
    # key; a .pub link made root overwrite the file it pointed at.
    keys_dir = tmp_path / "keys"
    keys_dir.mkdir(mode=0o700)
    if case.startswith("dangling"):
        target = bait.target(exists=False)
        plant(keys_dir / "ssh_host_ed25519_key", target)
    else:
        target = bait.target(exists=True)
        plant(keys_dir / "ssh_host_ed25519_key.pub", target)
    before = bait.snapshot()

    with pytest.raises(UnsafePathError, match="symbolic link"):
        start_ssh(
            tunnel="none", port=port, user=test_user, state_dir=state_dir, quiet=True, host_keys_dir=keys_dir
        )

    assert bait.snapshot() == before
    assert sorted(path.name for path in keys_dir.iterdir()) == [
        "ssh_host_ed25519_key" if case.startswith("dangling") else "ssh_host_ed25519_key.pub"
    ]
    assert our_processes(state_dir) == []
