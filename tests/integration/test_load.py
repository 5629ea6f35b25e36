"""Load: many real SSH logins through the stand-in ngrok tunnel, and not one may fail.

Why it matters: behind a tunnel every client arrives at sshd from the tunnel agent, and a public
tunnel address draws scanners within minutes. sshd's default ``MaxStartups 10:30:100`` starts
refusing 30 % of new connections once 10 are unauthenticated at once, rising to all of them at
100, so a handful of scanners (or a VS Code window opening several channels, or a parallel scp)
would make real logins fail at random. Our sshd config raises it to ``100:30:200``;
test_max_startups_is_raised shows sshd takes that value, and the parallel test shows 32
simultaneous logins (over 10 unauthenticated at once) all get through.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from colab_ssh import Connection, start_ssh

from ..support.host import SshClient, free_port
from ..support.stand_ins import NgrokCloud

PARALLEL = 32
IN_A_ROW = 200


def start(user: str, port: int, state_dir: Path, cloud: NgrokCloud, token: str) -> Connection:
    return start_ssh(
        tunnel="ngrok",
        authtoken=cloud.add_account(token),
        port=port,
        user=user,
        state_dir=state_dir,
        quiet=True,
    )


def failures(results: list[subprocess.CompletedProcess[str]]) -> list[str]:
    return [
        f"exit {result.returncode}: {result.stderr.strip()}" for result in results if result.returncode != 0
    ]


def test_32_parallel_logins_all_succeed(test_user, port, state_dir, ngrok_cloud: NgrokCloud, ssh: SshClient):
    connection = start(test_user, port, state_dir, ngrok_cloud, "tok_load_parallel")
    assert connection.port != port  # through the tunnel, not straight to sshd

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        results = list(pool.map(lambda _: ssh.run(connection, "true", timeout=60), range(PARALLEL)))
    elapsed = time.monotonic() - started

    assert failures(results) == []
    print(f"\n{PARALLEL} parallel logins through the tunnel: {elapsed:.1f} s")


def test_200_logins_in_a_row_all_succeed(test_user, port, state_dir, ngrok_cloud: NgrokCloud, ssh: SshClient):
    connection = start(test_user, port, state_dir, ngrok_cloud, "tok_load_serial")

    started = time.monotonic()
    results = [ssh.run(connection, "true", timeout=30) for _ in range(IN_A_ROW)]
    elapsed = time.monotonic() - started

    assert failures(results) == []
    each = 1000 * elapsed / IN_A_ROW
    print(f"\n{IN_A_ROW} logins in a row through the tunnel: {elapsed:.1f} s ({each:.0f} ms each)")


def test_max_startups_is_raised(test_user, port, state_dir, ngrok_cloud: NgrokCloud):
    """What sshd makes of our config (`sshd -T`): not the default 10:30:100 that drops logins."""
    start(test_user, port, state_dir, ngrok_cloud, "tok_load_config")

    effective = subprocess.run(
        ["sshd", "-T", "-f", str(state_dir / "sshd_config"), "-p", str(port)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()

    assert "maxstartups 100:30:200" in effective


SCANNERS = 10  # idle connections holding unauthenticated slots, as port scanners do
PROBES = 100


def answers(port: int) -> bool:
    """Whether sshd takes a new connection (its banner) or drops it at once (MaxStartups)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as probe:
        try:
            return probe.recv(4).startswith(b"SSH-")
        except ConnectionResetError:
            return False


@contextlib.contextmanager
def scanners(port: int, count: int) -> Iterator[None]:
    """Connections that got sshd's banner and then say nothing, until LoginGraceTime runs out."""
    held = []
    try:
        while len(held) < count:
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            if sock.recv(4).startswith(b"SSH-"):
                held.append(sock)
            else:
                sock.close()
        yield
    finally:
        for sock in held:
            sock.close()


@contextlib.contextmanager
def sshd_with_default_max_startups(state_dir: Path) -> Iterator[int]:
    """A second sshd with our config minus its MaxStartups line, i.e. sshd's default.

    (Not `-o MaxStartups=...`: for this keyword the config file's value beats the command line.)
    """
    ours = (state_dir / "sshd_config").read_text().splitlines()
    config = state_dir / "default-sshd_config"
    config.write_text("\n".join(line for line in ours if not line.startswith("MaxStartups")) + "\n")
    config.chmod(0o600)
    effective = subprocess.run(["/usr/sbin/sshd", "-T", "-f", str(config)], capture_output=True, text=True)
    assert "maxstartups 10:30:100" in effective.stdout.splitlines(), effective.stderr
    port = free_port()
    sshd = subprocess.Popen(
        ["/usr/sbin/sshd", "-D", "-f", str(config), "-p", str(port),
         "-o", f"PidFile={state_dir / 'default-sshd.pid'}", "-E", str(state_dir / "default-sshd.log")],
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while not _banner(port):
            assert sshd.poll() is None and time.monotonic() < deadline, "sshd did not start"
            time.sleep(0.02)
        yield port
    finally:
        sshd.terminate()
        sshd.wait(timeout=10)


def _banner(port: int) -> bool:
    with contextlib.suppress(OSError):
        return answers(port)
    return False


def test_scanners_holding_slots_make_the_default_drop_connections_but_not_ours(
    test_user, port, state_dir, ngrok_cloud: NgrokCloud, ssh: SshClient
):
    """10 idle connections (what a few scanners hold) and then 100 new ones: at the default
    10:30:100 sshd drops about 30 % of them (all 100 getting through has odds of 0.7**100); with
    ours every one gets through, and a real login through the tunnel works meanwhile."""
    connection = start(test_user, port, state_dir, ngrok_cloud, "tok_load_scanners")

    with sshd_with_default_max_startups(state_dir) as default_port, scanners(default_port, SCANNERS):
        dropped_at_default = sum(not answers(default_port) for _ in range(PROBES))
    with scanners(port, SCANNERS):
        dropped_by_ours = sum(not answers(port) for _ in range(PROBES))
        login = ssh.run(connection, "true")

    assert dropped_at_default > 0
    assert dropped_by_ours == 0
    assert login.returncode == 0, login.stderr
    print(f"\nwith {SCANNERS} scanners: default dropped {dropped_at_default}/{PROBES}, ours 0/{PROBES}")
