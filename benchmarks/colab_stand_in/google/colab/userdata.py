"""google.colab.userdata.get with no secrets stored: it raises SecretNotFoundError, as Colab does
for a name the user never added (googlecolab/colabtools google/colab/userdata.py)."""

from __future__ import annotations


class SecretNotFoundError(Exception):
    pass


class NotebookAccessError(Exception):
    pass


def get(key: str) -> str:
    raise SecretNotFoundError(key)
