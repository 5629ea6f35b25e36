"""A first start in a fresh runtime: the slow steps side by side, and what a failure or Ctrl-C in
one of them leaves behind (nothing).

The runtime is made fresh without touching the machine's own sshd: sshd is "not installed" until
the apt-get stand-in (stand_ins.APT_STAND_IN) installs it, which links the real sshd into the
test's folder; the ngrok agent is not on disk, and pyngrok's real installer downloads the
stand-in agent from a local server that answers slowly (or not at all); Drive's consent takes the
google.colab stand-in a while (or is refused). What ran when is read from the Progress start_ssh()
made, not timed: the tests check order and overlap, never speed.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyngrok import conf, installer, ngrok

from colab_ssh import (
    ColabSSHError,
    NgrokAuthtokenError,
    NgrokDownloadError,
    PackageInstallError,
    core,
    parallel_steps,
    start_ssh,
    stop_ssh,
)
from colab_ssh import start_steps as start_steps_module
from colab_ssh import system as system_module
from colab_ssh.paths import Paths
from colab_ssh.progress import Progress, StepRecord
from colab_ssh.system import ensure_package
from colab_ssh.tunnels.cloudflared import CloudflaredDownloadError, CloudflaredTunnel

from ..support.host import free_port, interrupt_when, machine_state, our_processes
from ..support.stand_ins import ColabStub, NgrokCloud, ngrok_agent_archive, serve_paths

INSTALL = "Installing openssh-server (first run only)"
DOWNLOAD = "Downloading the ngrok agent (first run only)"
DRIVE = "Mounting Google Drive"
AGENT = "Starting the ngrok agent"
SLOW = 1.0  # seconds each slow step takes here: long enough to overlap, short enough for a test


@pytest.fixture
def fresh_runtime(apt, monkeypatch: pytest.MonkeyPatch) -> Path:
    """openssh-server not installed: start_ssh() finds sshd only once the apt-get stand-in put it in
    its bin folder (a link to the real one). Returns that folder."""
    _script, _calls, tmp = apt
    bin_dir = Path(os.environ["APT_BIN"])
    real_find = system_module.find_program

    def find_program(name: str) -> str | None:
        return shutil.which(name, path=str(bin_dir)) if name == "sshd" else real_find(name)

    monkeypatch.setenv("APT_LINK", str(real_find("sshd")))
    monkeypatch.setenv("APT_MODE", "ok")
    monkeypatch.setenv("APT_SECONDS", str(SLOW))
    monkeypatch.setattr(system_module, "find_program", find_program)
    monkeypatch.setattr(start_steps_module, "find_program", find_program)
    # Debian's policy-rc.d goes in the test's folder, not /usr/sbin (other tests run apt meanwhile).
    installing = functools.partial(ensure_package, policy_rc_d=tmp / "policy-rc.d")
    monkeypatch.setattr(start_steps_module, "ensure_package", installing)
    return bin_dir


@pytest.fixture
def agent_download(ngrok_cloud: NgrokCloud, tmp_path: Path, monkeypatch) -> Iterator[dict[str, bytes]]:
    """No ngrok agent on disk: pyngrok's real installer fetches the stand-in agent, packed as ngrok
    packs it, from a local server that takes SLOW seconds to answer. Clear the routes for a 404."""
    routes = {"/ngrok-v3-stable-linux-amd64.tgz": ngrok_agent_archive()}
    with serve_paths(routes, delay=SLOW) as url:
        monkeypatch.setenv("PYNGROK_NGROK_PATH", str(tmp_path / "agent" / "ngrok"))
        monkeypatch.setattr(
            installer, "get_ngrok_cdn_url", lambda *_args, **_kw: f"{url}/ngrok-v3-stable-linux-amd64.tgz"
        )
        yield routes


@pytest.fixture
def progress(monkeypatch: pytest.MonkeyPatch) -> list[Progress]:
    """Every Progress start_ssh() makes, kept for the test to read what ran when."""
    made: list[Progress] = []

    class Kept(Progress):
        def __init__(self, **options) -> None:
            super().__init__(**options)
            made.append(self)

    monkeypatch.setattr(core, "Progress", Kept)
    return made


@pytest.fixture
def slow_consent(colab: ColabStub) -> ColabStub:
    colab.consent_seconds = SLOW
    return colab


def steps_of(progress: list[Progress]) -> dict[str, StepRecord]:
    (made,) = progress
    return {record.title: record for record in made.records}


def overlap(first: StepRecord, second: StepRecord) -> bool:
    assert first.end is not None and second.end is not None
    return first.start < second.end and second.start < first.end


def start_cold(user: str, port: int, state_dir: Path, **options: object):
    arguments: dict[str, object] = {"tunnel": "ngrok", "mount_drive": True, "quiet": True}
    arguments.update(options)
    return start_ssh(port=port, user=user, state_dir=state_dir, **arguments)


def earlier_session(user: str, state_dir: Path, bin_dir: Path, key_line: str) -> None:
    """A machine where colab_ssh ran before (by key: its config and authorized_keys differ from
    what a password start writes), then a fresh runtime again (openssh-server "removed")."""
    start_ssh(
        tunnel="none", port=free_port(), user=user, state_dir=state_dir, quiet=True, public_key=key_line
    )
    stop_ssh(state_dir=state_dir)
    (bin_dir / "sshd").unlink()


# --- side by side ---------------------------------------------------------------------------


def test_the_slow_steps_run_side_by_side_and_the_login_works(
    test_user, port, state_dir, fresh_runtime, agent_download, slow_consent, progress, ngrok_cloud, ssh
):
    connection = start_cold(test_user, port, state_dir, authtoken=ngrok_cloud.add_account("tok_cold_1"))

    steps = steps_of(progress)
    install, download, drive = steps[INSTALL], steps[DOWNLOAD], steps[DRIVE]
    assert overlap(install, download) and overlap(install, drive) and overlap(download, drive)
    assert not any(record.failed for record in steps.values())
    assert slow_consent.mounts == ["/content/drive"]
    result = ssh.run(connection, "id -un")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == test_user


def test_the_agent_logs_in_to_its_cloud_while_the_user_reads_drives_consent(
    test_user, port, state_dir, fresh_runtime, agent_download, colab, progress, ngrok_cloud, ssh, monkeypatch
):
    # Given a user who answers Drive's consent only once the agent's start has ended (30 s at most:
    # with the agent started after the consent, as before, the start would wait that long, then fail)...
    drive = sys.modules["google.colab.drive"]
    mount = drive.mount

    def agent_started() -> bool:
        return bool(progress) and any(
            record.title == AGENT and record.elapsed is not None for record in progress[0].records
        )

    def mount_once_the_agent_is_up(path: str) -> None:
        deadline = time.monotonic() + 30
        while not agent_started() and time.monotonic() < deadline:
            time.sleep(0.05)
        mount(path)

    monkeypatch.setattr(drive, "mount", mount_once_the_agent_is_up)

    # ...when start_ssh() runs in a fresh runtime...
    connection = start_cold(test_user, port, state_dir, authtoken=ngrok_cloud.add_account("tok_cold_8"))

    # ...then the agent started (logged in to ngrok's cloud) once downloaded, during the consent,
    # and the endpoint, tagged with the host keys' alias after the consent, takes logins.
    steps = steps_of(progress)
    agent, download, drive_step = steps[AGENT], steps[DOWNLOAD], steps[DRIVE]
    assert download.end is not None and agent.end is not None and drive_step.end is not None
    assert download.end <= agent.start and agent.end <= drive_step.end and overlap(agent, drive_step)
    assert not any(record.failed for record in steps.values())
    paths = Paths(state_dir=state_dir)
    config = conf.PyngrokConfig(ngrok_path=str(paths.ngrok_launcher), config_path=str(paths.ngrok_config))
    (endpoint,) = ngrok.get_tunnels(config)
    assert json.loads(endpoint.data["metadata"]) == {"colab_ssh_host_key_alias": connection.host_key_alias}
    assert ssh.run(connection, "true").returncode == 0


def test_the_benchmarks_sequential_seam_runs_them_one_after_another(
    test_user, port, state_dir, fresh_runtime, agent_download, slow_consent, progress, ngrok_cloud, ssh,
    monkeypatch,
):  # fmt: skip
    monkeypatch.setattr(parallel_steps, "CONCURRENT", False)

    connection = start_cold(test_user, port, state_dir, authtoken=ngrok_cloud.add_account("tok_cold_2"))

    (made,) = progress
    assert [record.title for record in made.records] == [DRIVE, INSTALL, DOWNLOAD, AGENT]  # the old order
    for earlier, later in zip(made.records, made.records[1:], strict=False):
        assert earlier.end is not None and earlier.end <= later.start
    assert ssh.run(connection, "true").returncode == 0


def test_progress_lines_say_when_each_step_started(
    test_user, port, state_dir, fresh_runtime, agent_download, ngrok_cloud, capsys
):
    start_ssh(
        tunnel="ngrok",
        port=port,
        user=test_user,
        state_dir=state_dir,
        authtoken=ngrok_cloud.add_account("tok_cold_3"),
    )

    lines = capsys.readouterr().out.splitlines()
    begun = [line for line in lines if line.endswith(" s)") and " ... (at +" in line]
    ended = [line for line in lines if ": done in " in line]
    assert {line.split(" ... ")[0] for line in begun} == {INSTALL, DOWNLOAD, AGENT}
    assert {line.split(": done in ")[0] for line in ended} == {INSTALL, DOWNLOAD, AGENT}
    # Both began before either ended: the terminal shows them side by side, as they ran.
    side_by_side = [line for line in begun + ended if not line.startswith(AGENT)]
    assert max(lines.index(line) for line in side_by_side if " ... (at +" in line) < min(
        lines.index(line) for line in side_by_side if ": done in " in line
    )
    assert [line for line in lines if line.startswith("SSH server up in ")]


# --- a failure in one step stops and undoes the others ----------------------------------------


def _apt_fails(c: dict) -> type[BaseException]:
    c["monkeypatch"].setenv("APT_MODE", "broken")
    return PackageInstallError


def _download_fails(c: dict) -> type[BaseException]:
    c["routes"].clear()  # the server answers 404
    return NgrokDownloadError


def _consent_refused(c: dict) -> type[BaseException]:
    c["colab"].consent_refused = True
    return ColabSSHError


def _agent_refused(c: dict) -> type[BaseException]:
    c["options"]["authtoken"] = "tok_not_an_account_4"  # ERR_NGROK_105
    return NgrokAuthtokenError


FAILURES = {
    "apt install fails": (_apt_fails, INSTALL, "dpkg returned an error code"),
    "agent download fails": (_download_fails, DOWNLOAD, "HTTP Error 404"),
    "Drive consent refused": (_consent_refused, DRIVE, "credential propagation was unsuccessful"),
    "agent refuses the token": (_agent_refused, None, "ERR_NGROK_105"),
}


@pytest.mark.parametrize("case", FAILURES, ids=list(FAILURES))
def test_a_failed_step_stops_and_undoes_the_others(
    case, test_user, port, state_dir, tmp_path, fresh_runtime, agent_download, slow_consent, progress,
    ngrok_cloud, client_key, monkeypatch,
):  # fmt: skip
    # Given a machine where colab_ssh ran before, now a fresh runtime...
    earlier_session(test_user, state_dir, fresh_runtime, client_key.public_line)
    progress.clear()
    before = machine_state(state_dir, test_user)
    options: dict[str, object] = {"authtoken": ngrok_cloud.add_account("tok_cold_5")}
    inject, failing_step, evidence = FAILURES[case]
    context = {
        "monkeypatch": monkeypatch,
        "routes": agent_download,
        "colab": slow_consent,
        "options": options,
    }
    error_type = inject(context)

    # ...when one step fails while the others run...
    with pytest.raises(ColabSSHError) as raised:
        start_cold(test_user, port, state_dir, **options)

    # ...then its error comes out as it is, and the machine is as it was.
    assert type(raised.value) is error_type
    assert evidence in str(raised.value)
    assert machine_state(state_dir, test_user) == before
    assert our_processes(tmp_path) == []  # no sshd, no agent, no apt left running
    assert not (tmp_path / "policy-rc.d").exists()
    if failing_step is not None:
        assert steps_of(progress)[failing_step].failed
    assert all(record.elapsed is not None for record in steps_of(progress).values())  # all ended


def test_a_cloudflared_download_that_fails_stops_and_undoes_the_others(
    test_user, port, state_dir, tmp_path, fresh_runtime, progress, monkeypatch
):
    monkeypatch.delenv("COLAB_SSH_CLOUDFLARED", raising=False)
    before = machine_state(state_dir, test_user)
    paths = Paths(state_dir=state_dir.absolute(), cache_dir=tmp_path / "cache")
    with serve_paths({}, delay=SLOW / 2) as url:  # answers 404
        tunnel = CloudflaredTunnel(paths, download_url=f"{url}/cloudflared", sha256="a" * 64)
        with pytest.raises(CloudflaredDownloadError, match="404"):
            start_ssh(tunnel=tunnel, port=port, user=test_user, state_dir=state_dir, quiet=True)

    assert machine_state(state_dir, test_user) == before
    assert our_processes(tmp_path) == []
    assert steps_of(progress)[INSTALL].elapsed is not None  # apt was let finish


# --- Ctrl-C ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("during", [INSTALL, DOWNLOAD, DRIVE])
def test_ctrl_c_during_the_slow_steps_leaves_nothing_running_and_nothing_changed(
    during, test_user, port, state_dir, tmp_path, fresh_runtime, agent_download, slow_consent, progress,
    ngrok_cloud, client_key,
):  # fmt: skip
    earlier_session(test_user, state_dir, fresh_runtime, client_key.public_line)
    progress.clear()
    before = machine_state(state_dir, test_user)

    def under_way() -> bool:
        return bool(progress) and any(
            record.title == during and record.elapsed is None for record in progress[0].records
        )

    watcher = interrupt_when(under_way)
    with pytest.raises(KeyboardInterrupt):
        start_cold(test_user, port, state_dir, authtoken=ngrok_cloud.add_account("tok_cold_6"))
    watcher.join(10)

    assert machine_state(state_dir, test_user) == before
    assert our_processes(tmp_path) == []
    assert [thread.name for thread in threading.enumerate() if thread.name == "colab-ssh-step"] == []
    assert all(record.elapsed is not None for record in progress[0].records)
    assert not (tmp_path / "policy-rc.d").exists()


def test_ctrl_c_while_the_agent_connects_beside_sshd(
    test_user, port, state_dir, tmp_path, ngrok_cloud: NgrokCloud, monkeypatch
):
    """The tunnel opens on a thread while sshd starts: Ctrl-C then stops both."""
    opening = threading.Event()
    real_open = start_steps_module.open_checked

    def open_slowly(tunnel, local_port):
        opening.set()
        time.sleep(0.5)  # the agent takes its time connecting to its cloud
        return real_open(tunnel, local_port)

    monkeypatch.setattr(start_steps_module, "open_checked", open_slowly)
    before = machine_state(state_dir, test_user)
    watcher = interrupt_when(opening.is_set)

    with pytest.raises(KeyboardInterrupt):
        start_ssh(
            tunnel="ngrok",
            port=port,
            user=test_user,
            state_dir=state_dir,
            quiet=True,
            authtoken=ngrok_cloud.add_account("tok_cold_7"),
        )
    watcher.join(10)

    assert machine_state(state_dir, test_user) == before
    assert our_processes(tmp_path) == []
