"""Fixtures every layer may use; none needs root or starts a process: free ports, a state folder path,
a stubbed google.colab, pyngrok pointed at the stand-in agent, stand-ins for ngrok's API and github.com,
the OpenSSH client's options. Root-only fixtures (a throw-away account, client keys, the stop_ssh()
check after each test) are in tests/integration/conftest.py. Helpers live in tests/support/, never
imported from a conftest."""

from __future__ import annotations

import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from .support.host import SshClient, free_port
from .support.ngrok_api import NgrokApi, serve_ngrok_api
from .support.stand_ins import (
    STAND_IN_NGROK,
    ColabStub,
    GitHubStandIn,
    NgrokCloud,
    _PublishedKeys,
    consent_refusal,
    refuse_outside_a_kernel,
    serve_paths,
)


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


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
        time.sleep(stub.consent_seconds)  # the user reads Google's pop-up
        if stub.consent_refused:
            raise consent_refusal()
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


@pytest.fixture
def ngrok_api(ngrok_cloud: NgrokCloud, monkeypatch: pytest.MonkeyPatch) -> Iterator[NgrokApi]:
    """ngrok's cloud API for the stand-in agents' accounts, on a thread; COLAB_SSH_NGROK_API_URL names it."""
    with serve_ngrok_api(NgrokApi(state=ngrok_cloud.state)) as api:
        monkeypatch.setenv("COLAB_SSH_NGROK_API_URL", api.url)
        monkeypatch.delenv("NGROK_API_KEY", raising=False)
        yield api
    assert api.failures == [], "the ngrok API stand-in failed (a broken test, not an API answer)"


@pytest.fixture
def ssh(tmp_path: Path) -> SshClient:
    return SshClient(known_hosts=tmp_path / "known_hosts")


@pytest.fixture
def github(monkeypatch: pytest.MonkeyPatch) -> Iterator[GitHubStandIn]:
    """Stands in for github.com's published keys: GitHub is not reachable here."""
    routes: dict[str, bytes] = {}
    with serve_paths(routes) as url:
        monkeypatch.setenv("COLAB_SSH_GITHUB_URL", url)
        yield GitHubStandIn(_PublishedKeys(routes), url)
