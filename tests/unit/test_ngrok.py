"""Where the ngrok authtoken comes from: argument, environment, Colab secret, prompt (google.colab
stubbed), and which error each of ngrok's codes becomes. The stand-in agent and logins are in
tests/integration/test_ngrok.py."""

from __future__ import annotations

import pytest

from colab_ssh import (
    AuthtokenMissingError,
    NgrokAuthtokenError,
    NgrokSessionLimitError,
    NgrokTcpNeedsCardError,
    TunnelError,
)
from colab_ssh.authtoken import resolve_authtoken
from colab_ssh.tunnels.ngrok import ngrok_error_for

from ..support.stand_ins import ColabStub


def test_secret_without_notebook_access_is_explained(colab: ColabStub):
    colab.secret_error = "NotebookAccessError"
    with pytest.raises(AuthtokenMissingError, match="no access"):
        resolve_authtoken(None, {}, someone_to_ask=lambda: False)


def test_the_order_is_argument_environment_secret_prompt(colab: ColabStub):
    colab.secrets["NGROK_AUTHTOKEN"] = "from-secret"
    environ = {"NGROK_AUTHTOKEN": "from-env"}
    asked: list[str] = []

    def ask(prompt: str) -> str:
        asked.append(prompt)
        return "from-prompt"

    def someone() -> bool:
        return True

    assert resolve_authtoken("from-arg", environ, someone_to_ask=someone, ask=ask) == "from-arg"
    assert resolve_authtoken(None, environ, someone_to_ask=someone, ask=ask) == "from-env"
    assert resolve_authtoken(None, {}, someone_to_ask=someone, ask=ask) == "from-secret"
    del colab.secrets["NGROK_AUTHTOKEN"]
    assert resolve_authtoken(None, {}, someone_to_ask=someone, ask=ask) == "from-prompt"
    assert asked and "authtoken" in asked[0]


def test_other_ngrok_failures_keep_their_raw_code():
    error = ngrok_error_for("failed to start tunnel: something new\r\n\r\nERR_NGROK_9999\r\n", "tok")

    assert type(error).__name__ == "TunnelError" and error.code == "ERR_NGROK_9999"


# Every code ngrok_error_for knows, from what the agent prints (ngrok's error pages,
# https://ngrok.com/docs/errors/err_ngrok_<code>/) to the error class a caller can catch.
KNOWN_CODES = [
    ("ERR_NGROK_105", NgrokAuthtokenError),
    ("ERR_NGROK_107", NgrokAuthtokenError),
    ("ERR_NGROK_300", NgrokAuthtokenError),
    ("ERR_NGROK_4018", NgrokAuthtokenError),
    ("ERR_NGROK_108", NgrokSessionLimitError),
    ("ERR_NGROK_8013", NgrokTcpNeedsCardError),
    ("ERR_NGROK_9999", TunnelError),  # a code colab_ssh does not know: the agent's words, redacted
]


@pytest.mark.parametrize(("code", "error"), KNOWN_CODES, ids=[code for code, _ in KNOWN_CODES])
def test_each_code_is_its_own_error_with_the_code_and_never_the_token(code, error):
    token = "2secretTokenAbcdefghij_KLMNOPqrstuvwxyz12"
    detail = f"authentication failed: Your authtoken {token} was refused.\r\n\r\n{code}\r\n"

    mapped = ngrok_error_for(detail, token)

    assert type(mapped) is error and isinstance(mapped, TunnelError)
    assert mapped.code == code and code in str(mapped)
    assert token not in str(mapped) and token not in repr(mapped.args)
