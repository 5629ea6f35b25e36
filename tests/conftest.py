"""Shared fixtures: a throw-away user, free ports, a stubbed google.colab, the stand-in ngrok agent,
and a real OpenSSH client to log in with."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import threading
import types
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from colab_ssh import Connection, stop_ssh

TESTS = Path(__file__).parent
STAND_IN_NGROK = TESTS / "stand_ins" / "ngrok"

if os.geteuid() != 0 or not sys.platform.startswith("linux"):
    pytest.exit("colab_ssh's tests run real sshd processes: run them as root on Linux", returncode=2)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def test_user() -> Iterator[str]:
    """A fresh account (home under /home, which the user can reach), so tests never change root's password."""
    name = f"cst{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "-m", "-s", "/bin/bash", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["pkill", "-KILL", "-u", name], check=False)
        subprocess.run(["userdel", "-f", "-r", name], check=False, capture_output=True)


@dataclass
class ColabStub:
    """Stands in for google.colab: the Colab UI is not here."""

    secrets: dict[str, str] = field(default_factory=dict)
    secret_error: str | None = None  # name of the exception userdata.get raises for a missing secret
    mounts: list[str] = field(default_factory=list)
    # Whether this test process plays a notebook kernel (the default) or a terminal / supervisor.
    in_kernel: bool = True


def refuse_outside_a_kernel(stub: ColabStub) -> None:
    """What google.colab does when there is no kernel to reach the notebook's front end through:
    drive.mount() and userdata.get() first send a request to the front end
    (googlecolab/colabtools google/colab/drive.py:133-138), and _message.send_request() takes the
    kernel from ipykernel's IPKernelApp, which outside a kernel has none (_message.py:116, 137)."""
    if not stub.in_kernel:
        raise AttributeError("'NoneType' object has no attribute 'shell'")


@pytest.fixture
def colab(monkeypatch: pytest.MonkeyPatch) -> ColabStub:
    stub = ColabStub()

    class SecretNotFoundError(Exception):
        pass

    class NotebookAccessError(Exception):
        pass

    def get(name: str) -> str:
        refuse_outside_a_kernel(stub)
        if stub.secret_error == "NotebookAccessError":
            raise NotebookAccessError(name)
        if name not in stub.secrets:
            raise SecretNotFoundError(name)
        return stub.secrets[name]

    def mount(path: str) -> None:
        refuse_outside_a_kernel(stub)
        stub.mounts.append(path)

    google = types.ModuleType("google")
    google_colab = types.ModuleType("google.colab")
    userdata = types.ModuleType("google.colab.userdata")
    drive = types.ModuleType("google.colab.drive")
    userdata.get = get  # type: ignore[attr-defined]
    userdata.SecretNotFoundError = SecretNotFoundError  # type: ignore[attr-defined]
    userdata.NotebookAccessError = NotebookAccessError  # type: ignore[attr-defined]
    drive.mount = mount  # type: ignore[attr-defined]
    google.colab = google_colab  # type: ignore[attr-defined]
    google_colab.userdata = userdata  # type: ignore[attr-defined]
    google_colab.drive = drive  # type: ignore[attr-defined]
    # The stub stands for a Colab notebook kernel (unless a test sets in_kernel=False), the only
    # place secrets can be read from and Drive mounted.
    monkeypatch.setattr("colab_ssh.colab.in_notebook", lambda: stub.in_kernel)
    for name, module in {
        "google": google,
        "google.colab": google_colab,
        "google.colab.userdata": userdata,
        "google.colab.drive": drive,
    }.items():
        monkeypatch.setitem(sys.modules, name, module)
    return stub


@dataclass
class NgrokCloud:
    """The stand-in agent's view of ngrok's cloud: which tokens are accounts, with or without a card."""

    accounts_file: Path
    state: Path
    accounts: dict[str, dict[str, object]] = field(default_factory=dict)

    def add_account(
        self,
        token: str,
        *,
        card: bool = True,
        max_sessions: int = 3,
        verified: bool = True,
        revoked: bool = False,
    ) -> str:
        self.accounts[token] = {
            "card": card,
            "max_sessions": max_sessions,
            "verified": verified,
            "revoked": revoked,
        }
        self.accounts_file.write_text(json.dumps(self.accounts))
        return token


@pytest.fixture
def ngrok_cloud(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> NgrokCloud:
    """Point pyngrok at the stand-in agent, with no authtoken in the environment."""
    cloud = NgrokCloud(accounts_file=tmp_path / "ngrok-accounts.json", state=tmp_path / "ngrok-state")
    cloud.accounts_file.write_text("{}")
    monkeypatch.setenv("PYNGROK_NGROK_PATH", str(STAND_IN_NGROK))
    monkeypatch.setenv("STAND_IN_NGROK_ACCOUNTS", str(cloud.accounts_file))
    monkeypatch.setenv("STAND_IN_NGROK_STATE", str(cloud.state))
    monkeypatch.delenv("NGROK_AUTHTOKEN", raising=False)
    return cloud


def _our_processes(state_dir: Path) -> list[int]:
    """Live (non-zombie) processes whose command line mentions the test's state dir."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            command_line = (entry / "cmdline").read_bytes().decode(errors="replace")
            status = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if str(state_dir) in command_line and status != "Z":
            found.append(int(entry.name))
    return found


@pytest.fixture(autouse=True)
def stop_everything(state_dir: Path) -> Iterator[None]:
    """Every test ends with stop_ssh(), and nothing of ours may survive it."""
    yield
    stop_ssh(state_dir=state_dir)
    assert _our_processes(state_dir) == [], "processes left running after stop_ssh()"


def our_processes(state_dir: Path) -> list[int]:
    return _our_processes(state_dir)


def live_processes_of(user: str) -> list[str]:
    """Command lines of the user's processes that have not exited (zombies wait for init)."""
    listing = subprocess.run(["ps", "-u", user, "-o", "stat=,args="], capture_output=True, text=True).stdout
    return [line for line in listing.splitlines() if line.strip() and not line.strip().startswith("Z")]


@dataclass(frozen=True)
class SshClient:
    """The real OpenSSH client, fed the password through sshpass's environment variable
    (never on a command line) and ignoring known_hosts (tests make new host keys often)."""

    known_hosts: Path

    def options(self) -> list[str]:
        return [
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
            "-o",
            "PubkeyAuthentication=no",
            "-o",
            "ConnectTimeout=10",
            "-o",
            "LogLevel=ERROR",
        ]

    def run_with_key(
        self, connection: Connection, command: str, identity: Path, *extra: str, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        """Key login only: no password is offered, so success proves the key was accepted."""
        argv = [
            "ssh", "-i", str(identity), "-o", "IdentitiesOnly=yes", "-o", "PasswordAuthentication=no",
            "-o", "KbdInteractiveAuthentication=no", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10",
            "-o", "StrictHostKeyChecking=no", "-o", f"UserKnownHostsFile={self.known_hosts}",
            *extra, "-p", str(connection.port), f"{connection.user}@{connection.host}", command,
        ]  # fmt: skip
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)

    def run(
        self,
        connection: Connection,
        command: str,
        *,
        password: str | None = None,
        tty: bool = False,
        stdin: str | None = None,
        host: str | None = None,
        port: int | None = None,
        timeout: float = 30,
    ) -> subprocess.CompletedProcess[str]:
        secret = connection.password if password is None else password
        argv = [
            "sshpass",
            "-e",
            "ssh",
            *self.options(),
            "-p",
            str(port or connection.port),
            *(["-tt"] if tty else []),
            f"{connection.user}@{host or connection.host}",
        ]
        if command:
            argv.append(command)
        return subprocess.run(
            argv,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "SSHPASS": secret or ""},
            check=False,
        )


@pytest.fixture
def ssh(tmp_path: Path) -> SshClient:
    return SshClient(known_hosts=tmp_path / "known_hosts")


@dataclass(frozen=True)
class ClientKey:
    private: Path
    public_line: str


def make_client_key(directory: Path, name: str = "id_ed25519", kind: str = "ed25519") -> ClientKey:
    directory.mkdir(parents=True, exist_ok=True)
    private = directory / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", f"{name}@laptop", "-f", str(private)], check=True
    )
    return ClientKey(private, private.with_suffix(".pub").read_text().strip())


@pytest.fixture
def client_key(tmp_path: Path) -> ClientKey:
    return make_client_key(tmp_path / "client")


@dataclass
class GitHubStandIn:
    """Serves https://github.com/<user>.keys from a dict, on 127.0.0.1: GitHub is not reachable here."""

    keys: dict[str, str]
    url: str


@contextlib.contextmanager
def serve_paths(routes: dict[str, bytes], requests: list[str] | None = None) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 answering GET for ``routes`` (404 otherwise); yields its URL.

    ``routes`` is read at request time, so a test may add paths while the server runs.
    """

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if requests is not None:
                requests.append(self.path)
            if self.path not in routes:
                self.send_error(404, "Not Found")
                return
            body = routes[self.path]
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class _PublishedKeys(dict[str, str]):
    """user -> the text of https://github.com/<user>.keys, mirrored into the server's routes."""

    def __init__(self, routes: dict[str, bytes]) -> None:
        super().__init__()
        self._routes = routes

    def __setitem__(self, user: str, keys: str) -> None:
        super().__setitem__(user, keys)
        self._routes[f"/{user}.keys"] = keys.encode()

    def update(self, *args: object, **kwargs: str) -> None:  # type: ignore[override]
        for user, keys in dict(*args, **kwargs).items():  # type: ignore[call-overload]
            self[user] = keys


@pytest.fixture
def github(monkeypatch: pytest.MonkeyPatch) -> Iterator[GitHubStandIn]:
    """Stands in for github.com's published keys: GitHub is not reachable here."""
    routes: dict[str, bytes] = {}
    with serve_paths(routes) as url:
        monkeypatch.setenv("COLAB_SSH_GITHUB_URL", url)
        yield GitHubStandIn(_PublishedKeys(routes), url)


def home_of(user: str) -> Path:
    return Path(pwd.getpwnam(user).pw_dir)


def have(program: str) -> bool:
    return shutil.which(program) is not None
