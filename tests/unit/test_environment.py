"""Which of the notebook kernel's variables SSH sessions get, and how sshd's config quotes them (pure)."""

from __future__ import annotations

import pytest

from colab_ssh.environment import NVIDIA_LIBRARY_DIR, session_environment
from colab_ssh.sshd_config import quote_setenv_value

from ..support.kernel_env import TRICKY, colab_kernel_environment


def test_selection_keeps_cuda_and_path_and_drops_kernel_only_variables():
    kernel = colab_kernel_environment()
    selected = session_environment({**kernel, "NGROK_AUTHTOKEN": "secret", "MY_API_KEY": "k"})

    assert selected["PATH"] == kernel["PATH"]
    assert selected["LD_LIBRARY_PATH"].split(":")[0] == NVIDIA_LIBRARY_DIR
    for kept in (
        "CUDA_VERSION",
        "COLAB_GPU",
        "COLAB_RELEASE_TAG",
        "NVIDIA_VISIBLE_DEVICES",
        "LANG",
        "PYTHONPATH",
        "TF_FORCE_GPU_ALLOW_GROWTH",
        "NVIDIA_REQUIRE_CUDA",
    ):
        assert selected[kept] == kernel[kept]
    for dropped in (
        "MPLBACKEND",
        "JPY_PARENT_PID",
        "JPY_SESSION_NAME",
        "PYDEVD_USE_FRAME_EVAL",
        "PAGER",
        "GIT_PAGER",
        "CLICOLOR",
        "TERM",
        "SHLVL",
        "PWD",
        "OLDPWD",
        "_",
        "HOME",
        "HOSTNAME",
        "KMP_LISTEN_PORT",
        "KMP_EXTRA_ARGS",
        "COLAB_KERNEL_MANAGER_PROXY_HOST",
        "COLAB_JUPYTER_TOKEN",
        "NGROK_AUTHTOKEN",
        "MY_API_KEY",
    ):
        assert dropped not in selected
    assert list(selected) == sorted(selected)


def test_nvidia_libraries_are_added_when_the_kernel_lacks_them():
    assert session_environment({})["LD_LIBRARY_PATH"] == NVIDIA_LIBRARY_DIR
    assert (
        session_environment({"LD_LIBRARY_PATH": "/a:/b"})["LD_LIBRARY_PATH"] == f"/a:/b:{NVIDIA_LIBRARY_DIR}"
    )


def test_values_with_control_characters_are_left_out():
    assert "MULTI" not in session_environment({"MULTI": "two\nlines"})


@pytest.mark.parametrize("value", list(TRICKY.values()))
def test_setenv_quoting_escapes_only_what_sshd_unescapes(value):
    quoted = quote_setenv_value(value)
    assert quoted.startswith('"') and quoted.endswith('"')
    assert quoted[1:-1].replace('\\"', "").count('"') == 0


SECRET_NAMES = [
    "KAGGLE_KEY",
    "MYSQL_PWD",
    "SSHPASS",
    "DB_PASS",
    "PASSPHRASE",
    "GPG_PASSPHRASE",
    "PGPASSWORD",
    "HF_TOKEN",
    "WANDB_API_KEY",
    "OPENAI_APIKEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "SENTRY_DSN",
    "SESSION_COOKIE",
    "NGROK_AUTHTOKEN",
    "ssh_private_key",
]


@pytest.mark.parametrize("name", SECRET_NAMES)
def test_names_that_usually_hold_credentials_are_not_copied(name):
    assert name not in session_environment({name: "s3cr3t-value", "KEEP_ME": "1"})
    assert "KEEP_ME" in session_environment({name: "s3cr3t-value", "KEEP_ME": "1"})


@pytest.mark.parametrize(
    "value",
    [
        "postgres://app:hunter2@db.internal:5432/app",
        "https://ghp_abcdef@github.com/me/repo.git",
        "redis://:p4ss@cache:6379/0",
    ],
)
def test_urls_with_credentials_are_not_copied_whatever_the_name(value):
    assert "DATABASE_URL" not in session_environment({"DATABASE_URL": value})


def test_ordinary_names_and_urls_are_still_copied():
    plain = {
        "KAGGLE_USERNAME": "me",
        "KAGGLE_URL_BASE": "https://www.kaggle.com",
        "COMPOSE_PROJECT": "x",
        "TF_FORCE_GPU_ALLOW_GROWTH": "true",
        "HTTP_PROXY_HOST": "proxy:3128",
    }
    assert set(plain) <= set(session_environment(plain))
