"""tunnel="ngrok": a TCP endpoint from ngrok, driven through pyngrok.

Things pyngrok would do by default that we avoid:
- it passes the authtoken as ``--authtoken`` on the agent's command line, where ``ps`` shows
  it to everyone; we put it in a 0600 config file instead;
- the agent inherits the caller's environment, stdin and stderr; a small launcher script removes
  every ``NGROK_*`` variable (the agent takes its authtoken and other settings from them, and one
  set there would win over our file, unredacted), and gives it /dev/null and a log file, so
  nobody reading our output through a pipe waits on the agent;
- its default config is built when pyngrok is imported, so ``PYNGROK_NGROK_PATH`` set later
  is ignored; we build a config for every start;
- it starts whatever agent is on disk. pyngrok 9 creates tunnels through the agent's
  ``/api/endpoints`` (pyngrok 9.1.0 ngrok.py:390), which agents before 3.30 do not have
  (https://ngrok.com/docs/agent/changelog/, "ngrok Agent 3.30.0"), and it waits for that path
  to answer before it returns: it probes it (process.py:129) between blocking ``readline()``
  calls on the agent's output (process.py:442), so an old agent that has logged its start-up
  and gone quiet hangs it for good, still running. We ask the agent its version first.

Its start is split in two: prepare() starts the agent (pyngrok's get_ngrok_process(), which waits
for its session with ngrok's cloud: the second a start spends here) and needs no port, so
start_ssh() runs it beside apt and Drive's consent; open() then asks the running agent for the
endpoint, with the port and the metadata naming the host keys, known only later.
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import json
import logging
import os
import re
import shlex
import subprocess
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
from pyngrok.ngrok import NgrokTunnel as PyngrokTunnel

from ..authtoken import TOKEN_PAGE
from ..errors import (
    ColabSSHError,
    NgrokAgentVersionError,
    NgrokAuthtokenError,
    NgrokDownloadError,
    NgrokSessionLimitError,
    NgrokTcpNeedsCardError,
    TunnelError,
)
from ..paths import Paths
from ..processes import ngrok_agent_is_ours, record_process, stop_recorded
from ..progress import Progress
from ..system import TEXT_BUSY, open_log, read_file, remove_file, retry_while_text_busy, tail, write_file
from . import Endpoint

__all__ = ["AGENT_START", "MIN_AGENT_VERSION", "NgrokTunnel", "ngrok_error_for"]

_ERROR_CODE = re.compile(r"ERR_NGROK_\d+")
# The first agent with /api/endpoints (see the module docstring).
MIN_AGENT_VERSION = (3, 30, 0)
# pyngrok reads the version the same way: ``ngrok --version`` -> "ngrok version X.Y.Z" (ngrok.py:590).
_VERSION = re.compile(r"version (\d+)\.(\d+)(?:\.(\d+))?")
_VERSION_TIMEOUT = 20.0  # seconds for ``ngrok --version``; a real agent answers at once
_UPDATE_TIMEOUT = 120  # seconds for ``ngrok update`` (a download of ~10 MB)
DOWNLOAD_PAGE = "https://ngrok.com/download"
AGENT_START = "Starting the ngrok agent"  # its Progress row: the agent's login to ngrok's cloud

# Why ngrok refused the token, by its error code (https://ngrok.com/docs/errors/err_ngrok_105/,
# .../err_ngrok_107/, .../err_ngrok_300/, .../err_ngrok_4018/).
_AUTHTOKEN_REASONS = {
    "ERR_NGROK_105": "it does not look like an ngrok authtoken (mistyped, or only part of it copied)",
    "ERR_NGROK_107": (
        "ngrok does not know it: it is well-formed, but was mistyped, reset or revoked, or belongs"
        " to a team account you were removed from"
    ),
    "ERR_NGROK_300": "this authtoken credential was revoked",
    "ERR_NGROK_4018": "ngrok needs the authtoken of a verified account, and none was accepted",
}


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
    if code in _AUTHTOKEN_REASONS:
        return NgrokAuthtokenError(
            f"ngrok rejected the authtoken ({code}): {_AUTHTOKEN_REASONS[code]}. Copy yours"
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


def _parse_version(output: str) -> tuple[int, int, int] | None:
    found = _VERSION.search(output)
    if found is None:
        return None
    major, minor, patch = found.groups()
    return int(major), int(minor), int(patch or 0)


def _shown(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version))


def _http_error_detail(error: PyngrokNgrokHTTPError) -> str:
    try:
        body = json.loads(error.body)
    except (TypeError, ValueError):
        return str(error.body)
    details = body.get("details") or {}
    return f"{body.get('msg', '')}: {details.get('err', '')}" if details else str(body)


def render_launcher(agent: Path, log: Path) -> str:
    """The script pyngrok runs as "ngrok": the real agent, without NGROK_* variables or a terminal.

    ``update`` is bounded by coreutils' timeout: a self-update whose server never answers would
    otherwise hold start_ssh() for good (pyngrok's update call has no time limit). Its stderr goes
    to pyngrok, which quotes it in the error (it says why the update failed, and holds no token).
    """
    quoted_agent, quoted_log = shlex.quote(str(agent)), shlex.quote(str(log))
    return (
        "#!/bin/sh\n"
        "# Written by colab_ssh: runs the ngrok agent with no terminal input, its stderr in a log,\n"
        "# and no NGROK_* variables: the agent would take its authtoken and settings from them.\n"
        "for name in $(env | sed -n 's/^\\(NGROK_[A-Za-z0-9_]*\\)=.*/\\1/p'); do unset \"$name\"; done\n"
        'if [ "$1" = update ]; then\n'
        f'  exec timeout {_UPDATE_TIMEOUT} {quoted_agent} "$@" </dev/null\n'
        "fi\n"
        f'exec {quoted_agent} "$@" </dev/null 2>>{quoted_log}\n'
    )


def _start_agent(config: conf.PyngrokConfig, authtoken: str) -> TunnelError | None:
    """pyngrok's agent start (``ngrok start --none``, until its session with ngrok's cloud is up,
    pyngrok process.py:_start_process); on failure our error, returned for the reason below."""
    try:
        ngrok.get_ngrok_process(config)
    except PyngrokNgrokError as error:
        return ngrok_error_for(error.ngrok_error or str(error), authtoken)
    except PyngrokError as error:
        return ngrok_error_for(str(error), authtoken)
    return None


def _connect(
    config: conf.PyngrokConfig, local_port: int, authtoken: str, metadata: str | None
) -> PyngrokTunnel | TunnelError:
    """pyngrok's connect(); on failure our error (token redacted) instead of pyngrok's exception.

    The error is returned, not raised: raised here, it would keep pyngrok's exception, which quotes
    the agent's line echoing a rejected token, in its ``__context__``. Nothing that holds the raw
    text outlives this frame, so a traceback printed with its local variables does not show it.
    """
    try:
        # Options go to the agent's POST /api/endpoints as they are (pyngrok ngrok.py:connect),
        # where `metadata` is an endpoint field (https://ngrok.com/docs/agent/config/v3/).
        options = {} if metadata is None else {"metadata": metadata}
        return ngrok.connect(str(local_port), "tcp", pyngrok_config=config, **options)
    except PyngrokNgrokHTTPError as error:  # a subclass of PyngrokNgrokError: first
        return ngrok_error_for(_http_error_detail(error), authtoken)
    except PyngrokNgrokError as error:
        return ngrok_error_for(error.ngrok_error or str(error), authtoken)
    except PyngrokError as error:
        return ngrok_error_for(str(error), authtoken)


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
        self._prepared: Path | None = None  # the agent prepare() readied for the next open()
        self._redact = _RedactSecret(authtoken)
        # The endpoint's metadata (ngrok's API lists it with the endpoint): set before open(),
        # by tunnels.tag_endpoint(), to a text naming this host's key alias.
        self.endpoint_metadata: str | None = None

    def __repr__(self) -> str:
        return f"<NgrokTunnel {self._public_url or 'closed'}>"

    def _agent_path(self) -> Path:
        """The real agent binary: PYNGROK_NGROK_PATH if set (read now, not at import), else pyngrok's."""
        return Path(os.environ.get("PYNGROK_NGROK_PATH") or conf.DEFAULT_NGROK_PATH)

    @staticmethod
    def _user_supplied() -> bool:
        """An agent the user pointed us to is theirs to update; pyngrok's own we keep current."""
        return bool(os.environ.get("PYNGROK_NGROK_PATH"))

    def _install_agent(self, agent: Path) -> None:
        if agent.exists():
            return
        failure = None
        try:
            with self._progress.step("Downloading the ngrok agent (first run only)"):
                installer.install_ngrok(str(agent))
        except (PyngrokNgrokInstallError, OSError) as error:
            failure = str(error)
        if failure is not None:  # raised here, not in the except block: no pyngrok error in __context__
            raise NgrokDownloadError(
                f"Could not download the ngrok agent to {agent}: {failure}. The runtime needs internet"
                " access to ngrok's servers; or download the agent yourself and set PYNGROK_NGROK_PATH.",
            )

    def _agent_version(self) -> tuple[tuple[int, int, int] | None, str]:
        """(version, what it printed) from ``ngrok --version``, run through the launcher, bounded."""

        def ask() -> subprocess.CompletedProcess[str]:
            result = subprocess.run(
                [str(self._paths.ngrok_launcher), "--version"],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=_VERSION_TIMEOUT,
                check=False,
            )
            # The launcher's own exec of the agent (its stderr goes to our log): a fresh download.
            if result.returncode == 126 and TEXT_BUSY.encode() in self._read_log()[-300:]:
                raise OSError(errno.ETXTBSY, TEXT_BUSY)
            return result

        try:
            result = retry_while_text_busy(ask)  # the launcher (and maybe the agent) were just written
        except subprocess.TimeoutExpired:
            return None, f"no answer to `ngrok --version` within {_VERSION_TIMEOUT:.0f} s"
        except OSError as error:
            return None, f"it could not be run ({error.strerror or error})"
        output = (result.stdout + result.stderr).strip()
        return _parse_version(output), output[:200] or f"`ngrok --version` exited with {result.returncode}"

    def _update_agent(self) -> str | None:
        """pyngrok's update call (it runs ``ngrok update``); returns why it failed, or None."""
        config = conf.PyngrokConfig(
            ngrok_path=str(self._paths.ngrok_launcher), config_path=str(self._paths.ngrok_config)
        )
        config.auth_token = None
        config.api_key = None
        try:
            with self._progress.step("Updating the ngrok agent"):
                ngrok.update(config)
        except (PyngrokError, OSError, subprocess.SubprocessError) as error:
            return str(error).replace(self._authtoken, "<authtoken>")
        return None

    def _check_agent_version(self, agent: Path) -> None:
        """Refuse (or update) an agent without /api/endpoints before it is ever started."""
        version, said = self._agent_version()
        if version is not None and version >= MIN_AGENT_VERSION:
            return
        needed = _shown(MIN_AGENT_VERSION)
        found = None if version is None else _shown(version)
        what = f"version {found}" if found else f"of unknown version ({said})"
        if self._user_supplied():
            raise NgrokAgentVersionError(
                f"The ngrok agent at {agent} (from PYNGROK_NGROK_PATH) is {what}; colab_ssh needs"
                f" {needed} or newer, because pyngrok 9 opens tunnels through the agent's /api/endpoints,"
                f" which older agents do not have. Update it (`{agent} update`), put a current agent"
                f" from {DOWNLOAD_PAGE} there, or unset PYNGROK_NGROK_PATH so that pyngrok installs"
                " and maintains its own.",
                found=found,
                needed=needed,
            )
        failure = self._update_agent()
        version, said = self._agent_version()
        if version is not None and version >= MIN_AGENT_VERSION:
            return
        found = None if version is None else _shown(version)
        raise NgrokAgentVersionError(
            f"The ngrok agent at {agent} is {what}, older than the {needed} colab_ssh needs, and"
            f" updating it failed ({failure or 'it still reports ' + (found or said)}). The runtime"
            f" needs internet access to ngrok's servers; or delete {agent} and run start_ssh() again"
            " so that pyngrok downloads a current agent.",
            found=found,
            needed=needed,
        )

    def _write_files(self, agent: Path) -> None:
        paths = self._paths
        write_file(
            paths.ngrok_config,
            f'version: "3"\nagent:\n  authtoken: {json.dumps(self._authtoken)}\n',
            mode=0o600,
        )
        write_file(paths.ngrok_launcher, render_launcher(agent, paths.ngrok_log), mode=0o700)
        # The agent writes a rejected token to stderr: the log is private from its first byte
        # (0600, and a link planted at its name is refused before the launcher's `2>>` opens it).
        os.close(open_log(paths.ngrok_log))

    def prepare(self) -> None:
        """Everything before the endpoint, which needs no port: the agent on disk (downloaded, or
        updated if too old), our config and launcher, an earlier kernel's agent stopped, and the
        agent started and logged in to ngrok's cloud (about a second). start_ssh() runs it while
        openssh-server installs and Drive's consent waits; open() does it if it was not done."""
        self._prepare(shown=True)

    def _prepare(self, *, shown: bool) -> None:
        agent = self._agent_path()
        self._install_agent(agent)
        self._write_files(agent)
        stop_recorded(self._paths.ngrok_pid, ngrok_agent_is_ours(self._paths.ngrok_config))
        try:
            self._check_agent_version(agent)
        except NgrokAgentVersionError:
            self._fail()
            raise
        self._start_agent(shown=shown)
        self._prepared = agent

    def _start_agent(self, *, shown: bool) -> None:
        """The agent process, with its session to ngrok's cloud up, and no endpoint yet: what
        open() then asks for (POST /api/endpoints) takes a local round trip and one to the cloud.
        ``shown``: a Progress row (not for the monitor's reopening, long after the start)."""
        config = conf.PyngrokConfig(
            ngrok_path=str(self._paths.ngrok_launcher),
            config_path=str(self._paths.ngrok_config),
            region=self._region,
            start_new_session=True,  # Ctrl-C in the notebook must not reach the agent
        )
        config.auth_token = None  # else pyngrok reads NGROK_AUTHTOKEN and puts it in argv
        config.api_key = None
        self._config = config  # before the start: close() stops what pyngrok started with it
        logging.getLogger("pyngrok.process.ngrok").addFilter(self._redact)
        logged_before = len(self._read_log())
        try:
            with self._progress.step(AGENT_START) if shown else contextlib.nullcontext():
                failure = _start_agent(config, self._authtoken)
                if failure is not None:  # raised outside pyngrok's except: its text stays out
                    if failure.code is None:
                        failure = self._error_in_log(logged_before) or failure
                    raise failure
        except BaseException:  # Ctrl-C too: no agent outlives a start that did not finish
            self._fail()
            raise
        self._record_agent(config)

    def _record_agent(self, config: conf.PyngrokConfig) -> None:
        agent_process = process.get_process(config)
        launched = cast("list[str]", agent_process.proc.args)  # pyngrok passes an argv list
        record_process(self._paths.ngrok_pid, agent_process.proc.pid, launched)

    def open(self, local_port: int) -> Endpoint:
        if self._prepared is None or self._config is None:
            self._prepare(shown=False)
        self._prepared = None  # a later open() (the monitor's) checks the agent again
        config = self._config
        assert config is not None  # noqa: S101 - _prepare() set it
        logged_before = len(self._read_log())
        # On the running agent (pyngrok's connect() reuses it; one that died meanwhile it starts again).
        tunnel = _connect(config, local_port, self._authtoken, self.endpoint_metadata)
        if isinstance(tunnel, TunnelError):
            if tunnel.code is None:
                tunnel = self._error_in_log(logged_before) or tunnel
            self._fail()
            raise tunnel
        self._record_agent(config)
        self._public_url = tunnel.public_url
        address = urlsplit(str(tunnel.public_url))
        if not address.hostname or not address.port:
            self.close()
            raise TunnelError(f"ngrok returned an address without host and port: {tunnel.public_url!r}")
        return Endpoint(address.hostname, address.port)

    def _read_log(self) -> bytes:
        with contextlib.suppress(OSError, ColabSSHError):
            return read_file(self._paths.ngrok_log) or b""
        return b""

    def _error_in_log(self, offset: int) -> TunnelError | None:
        """The agent's own error, from what it wrote to its log (stderr) during this start.

        pyngrok reads the agent's output a line at a time and stops once the process has exited,
        even with lines still unread: an agent that logs its error and exits at once (a rejected
        token) can leave pyngrok with no error but "unable to start". The agent's stderr, in our
        log, still says why.
        """
        written = self._read_log()[offset:].decode(errors="replace")
        if not _ERROR_CODE.search(written):
            return None
        return ngrok_error_for(tail(written, 20), self._authtoken)

    def _fail(self) -> None:
        """Clean up after a failed start: no agent, no token file, no token in the agent's log."""
        self.close()
        log = self._paths.ngrok_log
        with contextlib.suppress(OSError, ColabSSHError):
            text = (read_file(log) or b"").decode(errors="replace")
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
        except (PyngrokError, OSError, http.client.HTTPException):
            # pyngrok wraps only URLError and HTTPError (ngrok.py, api_request): an agent that dies
            # while answering resets the connection, which arrives as ConnectionResetError.
            return False
        return any(tunnel.public_url == self._public_url for tunnel in tunnels)

    def close(self) -> None:
        self._prepared = None
        if self._config is not None:
            ngrok.kill(self._config)
        remove_file(self._paths.ngrok_pid)
        remove_file(self._paths.ngrok_config)  # the token is not needed once the agent is gone
        self._public_url = None
        logging.getLogger("pyngrok.process.ngrok").removeFilter(self._redact)
