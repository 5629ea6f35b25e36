"""The generated sshd_config, as exact text (pure rendering, no process)."""

from __future__ import annotations

from pathlib import Path

from colab_ssh.sshd_config import SshdSettings, render_sshd_config

KEYS = [Path("/k/ssh_host_ed25519_key")]


def test_password_login_config_exactly():
    text = render_sshd_config(SshdSettings(host_keys=KEYS, environment={"A": 'x "y"'}))
    assert text == (
        "# Written by colab_ssh for the sshd it starts; rewritten by every start_ssh().\n"
        "# The listening port is given on sshd's command line.\n"
        "HostKey /k/ssh_host_ed25519_key\n"
        "PidFile none\n"
        "AllowUsers root\n"
        "PermitRootLogin yes\n"
        "PasswordAuthentication yes\n"
        "PermitEmptyPasswords no\n"
        "KbdInteractiveAuthentication no\n"
        "PubkeyAuthentication yes\n"
        "UsePAM no\n"
        "ClientAliveInterval 15\n"
        "ClientAliveCountMax 4\n"
        "TCPKeepAlive yes\n"
        "MaxStartups 100:30:200\n"
        "LoginGraceTime 30\n"
        "Subsystem sftp internal-sftp\n"
        "AcceptEnv LANG LC_*\n"
        "X11Forwarding no\n"
        "AllowTcpForwarding yes\n"
        "PrintMotd no\n"
        "UseDNS no\n"
        'SetEnv A="x \\"y\\""\n'
    )


def test_key_login_switches_passwords_off():
    lines = render_sshd_config(SshdSettings(host_keys=KEYS, password_login=False)).splitlines()
    assert "PasswordAuthentication no" in lines
    assert "PermitRootLogin prohibit-password" in lines
    assert not any(line.startswith("SetEnv") for line in lines)


def test_per_source_penalties_only_when_asked():
    base = SshdSettings(host_keys=KEYS)
    assert "PerSourcePenalties" not in render_sshd_config(base)
    flagged = SshdSettings(host_keys=KEYS, disable_per_source_penalties=True)
    assert "PerSourcePenalties no" in render_sshd_config(flagged).splitlines()


def test_only_the_chosen_user_may_log_in_and_root_only_when_chosen():
    def lines(user: str, password_login: bool) -> list[str]:
        settings = SshdSettings(host_keys=KEYS, user=user, password_login=password_login)
        return render_sshd_config(settings).splitlines()

    for password_login in (True, False):
        assert "AllowUsers alice" in lines("alice", password_login)
        assert "PermitRootLogin no" in lines("alice", password_login)
        assert "AllowUsers root" in lines("root", password_login)
    assert "PermitRootLogin yes" in lines("root", True)
    assert "PermitRootLogin prohibit-password" in lines("root", False)


def test_listen_addresses_only_when_given():
    everywhere = render_sshd_config(SshdSettings(host_keys=KEYS))
    loopback = render_sshd_config(SshdSettings(host_keys=KEYS, listen_addresses=("127.0.0.1", "::1")))
    assert "ListenAddress" not in everywhere
    assert loopback.splitlines()[2:4] == ["ListenAddress 127.0.0.1", "ListenAddress ::1"]
