"""Finding the ngrok authtoken: argument, environment, Colab secret, then a hidden prompt."""

from __future__ import annotations

import getpass
from collections.abc import Callable, Mapping

from .colab import can_prompt, read_colab_secret
from .errors import AuthtokenMissingError, InvalidArgumentError

__all__ = ["ENV_NAME", "check_authtoken", "resolve_authtoken"]

ENV_NAME = "NGROK_AUTHTOKEN"
SECRET_NAME = "NGROK_AUTHTOKEN"  # noqa: S105 - the name of the secret, not a secret
TOKEN_PAGE = "https://dashboard.ngrok.com/get-started/your-authtoken"  # noqa: S105


def check_authtoken(token: str, source: str) -> str:
    """Reject what cannot be a token, without ever echoing it."""
    token = token.strip()
    if not token:
        raise InvalidArgumentError(f"The ngrok authtoken from {source} is empty. Copy it from {TOKEN_PAGE}.")
    if any(ch.isspace() or not ch.isprintable() for ch in token):
        raise InvalidArgumentError(
            f"The ngrok authtoken from {source} contains spaces, line breaks or control characters;"
            f" copy it again from {TOKEN_PAGE} (only the token, not the `ngrok config` command)."
        )
    return token


def resolve_authtoken(
    explicit: str | None,
    environ: Mapping[str, str],
    *,
    colab_secret: Callable[[str], tuple[str | None, str]] = read_colab_secret,
    someone_to_ask: Callable[[], bool] = can_prompt,
    ask: Callable[[str], str] = getpass.getpass,
) -> str:
    if explicit is not None:
        return check_authtoken(explicit, "the authtoken argument")
    if environ.get(ENV_NAME):
        return check_authtoken(environ[ENV_NAME], f"the {ENV_NAME} environment variable")
    secret, secret_status = colab_secret(SECRET_NAME)
    if secret is not None:
        return check_authtoken(secret, f"the Colab secret {SECRET_NAME}")
    if someone_to_ask():
        answer = ask(f"ngrok authtoken (from {TOKEN_PAGE}): ")
        return check_authtoken(answer, "the prompt")
    raise AuthtokenMissingError(
        "No ngrok authtoken found. Looked in: (1) start_ssh(authtoken=...): not given;"
        f" (2) the {ENV_NAME} environment variable: not set; (3) the Colab secret {SECRET_NAME}:"
        f" {secret_status}; (4) a hidden prompt: no terminal or notebook to ask. Get a token at"
        f" {TOKEN_PAGE} and use any of the first three, or pass tunnel='none' if the port is reachable."
    )
