"""tunnel="ngrok": a TCP endpoint from ngrok, driven through pyngrok.

Three things pyngrok would do by default that we avoid:
- it passes the authtoken as ``--authtoken`` on the agent's command line, where ``ps`` shows
  it to everyone; we put it in a 0600 config file instead;
- the agent inherits the caller's stdin and stderr; a small launcher script gives it
  /dev/null and a log file, so nobody reading our output through a pipe waits on the agent;
- its default config is built when pyngrok is imported, so ``PYNGROK_NGROK_PATH`` set later
  is ignored; we build a config for every start.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shlex
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit

from pyngrok import conf, installer, ngrok, process
from pyngrok.exception import (
    PyngrokError,
    PyngrokNgrokError,
    PyngrokNgrokHTTPError,
    PyngrokNgrokInstallError,
)

from ..authtoken import TOKEN_PAGE
from ..errors import (
    NgrokAuthtokenError,
    NgrokDownloadError,
    NgrokSessionLimitError,
    NgrokTcpNeedsCardError,
    TunnelError,
)
from ..paths import Paths
from ..processes import ngrok_agent_is_ours, record_process, stop_recorded
from ..progress import Progress
from ..system import write_file
from . import Endpoint

__all__ = ["NgrokTunnel", "ngrok_error_for"]

_ERROR_CODE = re.compile(r"ERR_NGROK_\d+")


class _RedactSecret(logging.Filter):
    """The agent echoes a rejected authtoken in its error line; pyngrok logs agent lines."""

    def __init__(self, secret: str) -> None:
        super().__init__()
        self.secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self.secret in message:
            record.msg, record.args = message.replace(self.secret, "<authtoken>"), None
        return True


def ngrok_error_for(detail: str, authtoken: str) -> TunnelError:
    """The ColabSSHError for an ngrok failure, with what to do about it. Never shows the token."""
    detail = detail.replace(authtoken, "<authtoken>").strip()
    found = _ERROR_CODE.search(detail)
    code = found.group(0) if found else None
    if code in ("ERR_NGROK_105", "ERR_NGROK_4018"):
        return NgrokAuthtokenError(
            f"ngrok rejected the authtoken ({code}): it is missing, mistyped or revoked. Copy yours"
            f" from {TOKEN_PAGE} (a free account is enough to get one) and pass"
            " start_ssh(authtoken=...), set NGROK_AUTHTOKEN, or store it as the Colab secret"
            " NGROK_AUTHTOKEN.",
            code=code,
        )
    if code == "ERR_NGROK_108":
        return NgrokSessionLimitError(
            "ngrok refused a second agent session for this account (ERR_NGROK_108): an ngrok agent is"
            " already running elsewhere with the same authtoken (another notebook, your laptop)."
            " Stop it (the list is at https://dashboard.ngrok.com/agents), then run start_ssh() again.",
            code=code,
        )
    if code == "ERR_NGROK_8013":
        return NgrokTcpNeedsCardError(
            "ngrok refuses TCP endpoints to free accounts without a card on file (ERR_NGROK_8013), and"
            " SSH needs TCP. Add a card at https://dashboard.ngrok.com/settings#id-verification (it is"
            " not charged), or use another tunnel: tunnel='cloudflared' needs no card and no account"
            " (your computer needs cloudflared installed), or tunnel='none' where the port is reachable.",
            code=code,
        )
    return TunnelError(f"ngrok could not open the tunnel: {detail}", code=code)


def _http_error_detail(error: PyngrokNgrokHTTPError) -> str:
    try:
        body = json.loads(error.body)
    except (TypeError, ValueError):
        return str(error.body)
    details = body.get("details") or {}
    return f"{body.get('msg', '')}: {details.get('err', '')}" if details else str(body)


class NgrokTunnel:
    name = "ngrok"

    def __init__(
        self,
        authtoken: str,
        *,
        region: str | None = None,
        paths: Paths | None = None,
        progress: Progress | None = None,
    ) -> None:
        self._authtoken = authtoken
        self._progress = progress or Progress(quiet=True)
        self._region = region
        self._paths = paths or Paths()
        self._config: conf.PyngrokConfig | None = None
        self._public_url: str | None = None
        self._redact = _RedactSecret(authtoken)

    def __repr__(self) -> str:
        return f"<NgrokTunnel {self._public_url or 'closed'}>"

    def _agent_path(self) -> Path:
        """The real agent binary: PYNGROK_NGROK_PATH if set (read now, not at import), else pyngrok's."""
        return Path(os.environ.get("PYNGROK_NGROK_PATH") or conf.DEFAULT_NGROK_PATH)

    def _install_agent(self, agent: Path) -> None:
        if agent.exists():
            return
        try:
            with self._progress.step("Downloading the ngrok agent (first run only)"):
                installer.install_ngrok(str(agent))
        except (PyngrokNgrokInstallError, OSError) as error:
            raise NgrokDownloadError(
                f"Could not download the ngrok agent to {agent}: {error}. The runtime needs internet"
                " access to ngrok's servers; or download the agent yourself and set PYNGROK_NGROK_PATH.",
            ) from None

    def _write_files(self, agent: Path) -> None:
        paths = self._paths
        write_file(
            paths.ngrok_config,
            f'version: "3"\nagent:\n  authtoken: {json.dumps(self._authtoken)}\n',
            mode=0o600,
        )
        write_file(
            paths.ngrok_launcher,
            "#!/bin/sh\n"
            "# Written by colab_ssh: runs the ngrok agent with no terminal input and its stderr in a log.\n"
            f'exec {shlex.quote(str(agent))} "$@" </dev/null 2>>{shlex.quote(str(paths.ngrok_log))}\n',
            mode=0o700,
        )
        # The agent writes a rejected token to stderr: the log is private from its first byte.
        paths.ngrok_log.touch(mode=0o600)
        paths.ngrok_log.chmod(0o600)

    def open(self, local_port: int) -> Endpoint:
        agent = self._agent_path()
        self._install_agent(agent)
        self._write_files(agent)
        stop_recorded(self._paths.ngrok_pid, ngrok_agent_is_ours(self._paths.ngrok_config))
        config = conf.PyngrokConfig(
            ngrok_path=str(self._paths.ngrok_launcher),
            config_path=str(self._paths.ngrok_config),
            region=self._region,
            start_new_session=True,  # Ctrl-C in the notebook must not reach the agent
        )
        config.auth_token = None  # else pyngrok reads NGROK_AUTHTOKEN and puts it in argv
        config.api_key = None
        self._config = config
        logging.getLogger("pyngrok.process.ngrok").addFilter(self._redact)
        try:
            tunnel = ngrok.connect(str(local_port), "tcp", pyngrok_config=config)
        except PyngrokNgrokHTTPError as error:  # a subclass of PyngrokNgrokError: first
            self._fail()
            raise ngrok_error_for(_http_error_detail(error), self._authtoken) from None
        except PyngrokNgrokError as error:
            self._fail()
            raise ngrok_error_for(error.ngrok_error or str(error), self._authtoken) from None
        except PyngrokError as error:
            self._fail()
            raise ngrok_error_for(str(error), self._authtoken) from None
        agent_process = process.get_process(config)
        launched = cast("list[str]", agent_process.proc.args)  # pyngrok passes an argv list
        record_process(self._paths.ngrok_pid, agent_process.proc.pid, launched)
        self._public_url = tunnel.public_url
        address = urlsplit(str(tunnel.public_url))
        if not address.hostname or not address.port:
            self.close()
            raise TunnelError(f"ngrok returned an address without host and port: {tunnel.public_url!r}")
        return Endpoint(address.hostname, address.port)

    def _fail(self) -> None:
        """Clean up after a failed start: no agent, no token file, no token in the agent's log."""
        self.close()
        log = self._paths.ngrok_log
        with contextlib.suppress(OSError):
            text = log.read_text(errors="replace")
            if self._authtoken in text:
                write_file(log, text.replace(self._authtoken, "<authtoken>"), mode=0o600)

    def alive(self) -> bool:
        config = self._config
        if config is None or self._public_url is None:
            return False
        if not process.is_process_running(config.ngrok_path):
            return False
        try:
            tunnels = ngrok.get_tunnels(config)
        except PyngrokError:
            return False
        return any(tunnel.public_url == self._public_url for tunnel in tunnels)

    def close(self) -> None:
        if self._config is not None:
            ngrok.kill(self._config)
        self._paths.ngrok_pid.unlink(missing_ok=True)
        self._paths.ngrok_config.unlink(missing_ok=True)  # the token is not needed once the agent is gone
        self._public_url = None
        logging.getLogger("pyngrok.process.ngrok").removeFilter(self._redact)
