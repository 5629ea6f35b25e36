"""Where the ngrok authtoken comes from: argument, environment, Colab secret, prompt (google.colab
stubbed). The stand-in agent and logins are in tests/integration/test_ngrok.py."""

from __future__ import annotations

import pytest

from colab_ssh import (
    AuthtokenMissingError,
)
from colab_ssh.authtoken import resolve_authtoken

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
