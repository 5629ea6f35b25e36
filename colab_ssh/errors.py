"""One exception tree for everything that can go wrong, each class carrying its evidence.

Every message says what went wrong and what to do about it; callers that want to branch
can use the class and its attributes instead of parsing text.
"""

from __future__ import annotations

__all__ = [
    "AuthtokenMissingError",
    "CloudflaredDownloadError",
    "CloudflaredIntegrityError",
    "CloudflaredStartError",
    "ColabOnlyError",
    "ColabSSHError",
    "InvalidArgumentError",
    "KeySourceError",
    "NgrokAgentVersionError",
    "NgrokAuthtokenError",
    "NgrokDownloadError",
    "NgrokSessionLimitError",
    "NgrokTcpNeedsCardError",
    "PackageInstallError",
    "SessionLostError",
    "SshdConfigError",
    "SshdStartError",
    "StateDirBusyError",
    "TunnelError",
    "UnsafePathError",
    "UnsupportedSystemError",
]


class ColabSSHError(Exception):
    """Base class of every error raised by colab_ssh."""


class UnsupportedSystemError(ColabSSHError):
    """Not Linux, or not root: nothing was changed on the machine."""


class InvalidArgumentError(ColabSSHError, ValueError):
    """An argument of start_ssh() is unusable; raised before anything is changed."""


class UnsafePathError(ColabSSHError):
    """A folder or file another account could control (a link, a wide mode, another owner)."""


class KeySourceError(ColabSSHError):
    """Public keys could not be fetched (GitHub user unknown, without keys, or out of reach)."""


class ColabOnlyError(ColabSSHError):
    """A Colab-only feature (Drive, Colab secrets) was asked for outside Colab."""


class DriveNotMountedError(ColabOnlyError):
    """Drive was asked for outside a notebook cell (Colab's terminal, ``colab-ssh start``, the
    supervisor) and is not mounted: only a cell can show Google's consent."""


class PackageInstallError(ColabSSHError):
    """apt-get could not install a package; ``output_tail`` holds the end of its output."""

    def __init__(self, message: str, *, output_tail: str) -> None:
        super().__init__(f"{message}\n--- last lines of apt-get's output ---\n{output_tail}")
        self.output_tail = output_tail


class SshdConfigError(ColabSSHError):
    """``sshd -t`` rejected the generated configuration; the previous one was restored."""

    def __init__(self, message: str, *, sshd_message: str) -> None:
        super().__init__(f"{message}\nsshd said: {sshd_message}")
        self.sshd_message = sshd_message


class SshdStartError(ColabSSHError):
    """sshd did not come up; ``log_tail`` holds the end of its log."""

    def __init__(self, message: str, *, log_tail: str) -> None:
        super().__init__(f"{message}\n--- last lines of sshd's log ---\n{log_tail}")
        self.log_tail = log_tail


class StateDirBusyError(ColabSSHError):
    """Another live process runs SSH from this state folder; ``owner_pid`` and ``owner`` name it."""

    def __init__(self, message: str, *, owner_pid: int, owner: str) -> None:
        super().__init__(message)
        self.owner_pid = owner_pid
        self.owner = owner


class SessionLostError(ColabSSHError):
    """The background monitor stopped for good: the port was taken, or another process stopped us."""


class TunnelError(ColabSSHError):
    """The tunnel could not be opened; ``code`` is the provider's error code when it gave one."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class AuthtokenMissingError(TunnelError):
    """No ngrok authtoken in any of the places we look, and no one to ask."""


class NgrokAuthtokenError(TunnelError):
    """ngrok rejected the authtoken: malformed (ERR_NGROK_105), unknown, reset or revoked
    (ERR_NGROK_107, ERR_NGROK_300), or it wants a verified account's token (ERR_NGROK_4018)."""


class NgrokAgentVersionError(TunnelError):
    """The ngrok agent on disk is too old for pyngrok 9 and could not be updated.

    ``found`` is the version it reported (or None if it did not say), ``needed`` the oldest that works.
    """

    def __init__(self, message: str, *, found: str | None, needed: str) -> None:
        super().__init__(message)
        self.found = found
        self.needed = needed


class NgrokSessionLimitError(TunnelError):
    """Another ngrok agent already uses this account's sessions (ERR_NGROK_108)."""


class NgrokTcpNeedsCardError(TunnelError):
    """ngrok refuses TCP endpoints to free accounts without a card on file (ERR_NGROK_8013)."""


class NgrokDownloadError(TunnelError):
    """The ngrok agent binary could not be downloaded (usually: no internet)."""


# cloudflared's errors live here, not in its modules, so that the tunnel registry can list them
# without loading cloudflared's download code (urllib, http.client, ssl) on every start.
class CloudflaredDownloadError(TunnelError):
    """cloudflared could not be fetched (no internet, a CPU without a pinned build, a refused
    redirect, the deadline), or the program to run is not usable (not executable, a folder)."""


class CloudflaredIntegrityError(CloudflaredDownloadError):
    """The downloaded file's SHA-256 is not the pinned one; it was never written or run."""

    def __init__(self, message: str, *, expected: str, actual: str) -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual


class CloudflaredStartError(TunnelError):
    """cloudflared gave no working quick-tunnel address; ``log_tail`` holds the end of its log.

    ``code`` is "1015" when Cloudflare rate-limited the request for a quick tunnel.
    """

    def __init__(self, message: str, *, log_tail: str, code: str | None = None) -> None:
        super().__init__(f"{message}\n--- last lines of cloudflared's log ---\n{log_tail}", code=code)
        self.message_head = message  # the message without the log
        self.log_tail = log_tail
