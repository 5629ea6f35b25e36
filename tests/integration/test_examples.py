"""The examples run as users run them: the notebooks in a real kernel (nbclient + ipykernel) with
google.colab / kaggle_secrets and the ngrok cloud stood in, and the VM script as a process."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from colab_ssh import Connection
from colab_ssh.connect_code import decode

from ..support.host import SshClient, our_processes
from ..support.stand_ins import NgrokCloud

ROOT = Path(__file__).parent.parent.parent
EXAMPLES = ROOT / "examples"
BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
COLAB_LINK = (
    "https://colab.research.google.com/github/<owner>/colab_ssh/blob/main/examples/colab_quickstart.ipynb"
)

# Stand-ins for what only Colab and Kaggle have, imported by the kernel from PYTHONPATH.
# google/ has no __init__.py: a namespace package, like the real one next to google-auth.
STUBS = {
    "google/colab/__init__.py": "from . import drive, userdata\n",
    "google/colab/userdata.py": """
import json, os

class SecretNotFoundError(Exception):
    pass

class NotebookAccessError(Exception):
    pass

def get(name):
    with open(os.environ["STUB_SECRETS"]) as file:
        secrets = json.load(file)
    if name not in secrets:
        raise SecretNotFoundError(name)
    return secrets[name]
""",
    "google/colab/drive.py": """
import os

def mount(mount_point, force_remount=False):
    # The real one asks the front end for consent through the kernel first (colabtools
    # google/colab/drive.py:133-138, _message.py:116,137): outside a kernel there is none.
    from ipykernel.kernelapp import IPKernelApp
    if not IPKernelApp.initialized():
        raise AttributeError("'NoneType' object has no attribute 'shell'")
    with open(os.environ["STUB_MOUNTS"], "a") as file:
        file.write(mount_point + "\\n")
""",
    "kaggle_secrets.py": """
import json, os

class UserSecretsClient:
    def get_secret(self, label):
        with open(os.environ["STUB_SECRETS"]) as file:
            return json.load(file)[label]
""",
}


def write_stubs(folder: Path) -> Path:
    for name, text in STUBS.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


@pytest.fixture
def kernel_env(tmp_path: Path, ngrok_cloud: NgrokCloud) -> dict[str, str]:
    """The kernel's environment: the stubs first on its path, the stand-in ngrok agent, a token secret."""
    token = ngrok_cloud.add_account("tok_notebook_account")
    secrets = tmp_path / "secrets.json"
    secrets.write_text(json.dumps({"NGROK_AUTHTOKEN": token}))
    stubs = write_stubs(tmp_path / "stubs")
    path = os.pathsep.join(filter(None, [str(stubs), str(ROOT), os.environ.get("PYTHONPATH")]))
    return {
        **os.environ,
        "PYTHONPATH": path,
        "STUB_SECRETS": str(secrets),
        "STUB_MOUNTS": str(tmp_path / "mounts.txt"),
    }


def harness_cell(port: int, user: str, state_dir: Path) -> Any:
    """Runs first: the same start_ssh() and stop_ssh(), aimed at a test user, a free port and a test folder
    (the notebooks' own cells run unchanged)."""
    source = (
        "import functools, colab_ssh\n"
        f"colab_ssh.start_ssh = functools.partial(colab_ssh.start_ssh, port={port}, user={user!r},"
        f" state_dir={str(state_dir)!r})\n"
        f"colab_ssh.stop_ssh = functools.partial(colab_ssh.stop_ssh, state_dir={str(state_dir)!r})\n"
    )
    return nbformat.v4.new_code_cell(source, id="test-harness")


def outputs_of(cell: Any, mime: str) -> list[str]:
    return [
        output["data"][mime]
        for output in cell.get("outputs", [])
        if output["output_type"] in ("display_data", "execute_result") and mime in output.get("data", {})
    ]


def card_of(cell: Any) -> tuple[str, str]:
    """The connection card's HTML and its plain-text twin (a cell may show progress too)."""
    (card,) = [
        output["data"]
        for output in cell.get("outputs", [])
        if output["output_type"] == "display_data"
        and output["data"].get("text/html", "").startswith('<div class="colab-ssh-card">')
    ]
    return card["text/html"], card["text/plain"]


def connection_from_card(cell: Any, user: str) -> Connection:
    """What the card's plain-text twin says: the public port and the password."""
    _card, text = card_of(cell)
    port = int(re.search(rf"ssh -p (\d+) {user}@127\.0\.0\.1\n", text).group(1))  # type: ignore[union-attr]
    password = re.search(r"password: (\S+)\n", text).group(1)  # type: ignore[union-attr]
    return Connection("127.0.0.1", port, user, password, 0, "ngrok")


class Notebook:
    """One example notebook in a live kernel, run a cell at a time so the test can log in between."""

    def __init__(self, path: Path, env: dict[str, str], harness: Any, workdir: Path) -> None:
        self.notebook = nbformat.read(path, as_version=4)
        nbformat.validate(self.notebook)
        self.cells = self.notebook.cells
        self.cells.insert(0, harness)
        self.client = NotebookClient(
            self.notebook,
            timeout=120,
            kernel_name="python3",
            skip_cells_with_tag="skip-execution",
            resources={"metadata": {"path": str(workdir)}},
        )
        self.env = env

    @staticmethod
    def index_of(cells: list[Any], needle: str) -> int:
        return next(i for i, cell in enumerate(cells) if cell.cell_type == "code" and needle in cell.source)

    def run(self) -> Iterator[int]:
        """Yields each code cell's index after running it (skipped cells included, with no outputs)."""
        with self.client.setup_kernel(env=self.env):
            for index, cell in enumerate(self.cells):
                if cell.cell_type == "code":
                    self.client.execute_cell(cell, index)
                    yield index


def check_markdown(notebook: Any, *phrases: str) -> None:
    text = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "markdown")
    for phrase in phrases:
        assert phrase in text, phrase


def check_pip_cells_are_skipped(notebook: Any) -> None:
    pip_cells = [cell for cell in notebook.cells if "!pip install" in cell.source]
    assert pip_cells, "the notebook installs the package"
    for cell in pip_cells:
        assert "skip-execution" in cell.metadata.get("tags", [])
        assert cell.get("outputs", []) == []


def check_card(cell: Any) -> None:
    card, text = card_of(cell)
    assert text.startswith("SSH server is up.")
    ssh_command = re.search(r"ssh:\s+(ssh -p (\d+) \S+)\n", text)
    assert ssh_command is not None
    assert f'<code class="cs-ssh">{ssh_command.group(1)}</code>' in card
    # The laptop's line comes first, in both forms, and carries this runtime's address.
    connect = re.search(r"^  (colab-ssh connect (cs1-\S+))$", text, re.M)
    assert connect is not None and text.index(connect.group(1)) < text.index(ssh_command.group(1))
    assert f'<code class="cs-connect">{connect.group(1)}</code>' in card
    assert decode(connect.group(2)).port == int(ssh_command.group(2))
    assert not [output for output in cell.outputs if output["output_type"] == "error"]


def test_the_colab_notebook(tmp_path, port, test_user, state_dir, kernel_env, ssh: SshClient):
    notebook = Notebook(
        EXAMPLES / "colab_quickstart.ipynb", kernel_env, harness_cell(port, test_user, state_dir), tmp_path
    )
    check_markdown(
        notebook.notebook, f"[![Open In Colab]({BADGE})]({COLAB_LINK})", "NGROK_AUTHTOKEN", "terms"
    )
    start = Notebook.index_of(notebook.cells, "conn = start_ssh()")
    drive = Notebook.index_of(notebook.cells, "mount_drive=True")
    stop = Notebook.index_of(notebook.cells, "stop_ssh()")

    for index in notebook.run():
        cell = notebook.cells[index]
        if index == start:
            check_card(cell)
            login = ssh.run(connection_from_card(cell, test_user), "id -un")
            assert login.stdout.strip() == test_user, login.stderr
        if index == drive:
            check_card(cell)
            assert ":/content/drive/MyDrive" in card_of(cell)[1]
            assert (tmp_path / "mounts.txt").read_text() == "/content/drive\n"
            progress = [text for text in outputs_of(cell, "text/plain") if "Mounting Google Drive" in text]
            assert progress and re.search(r"Mounting Google Drive: done in \d+\.\d s", progress[0])
        if index == stop:
            assert our_processes(state_dir) == []
            assert not (state_dir / "sshd.pid").exists()

    check_pip_cells_are_skipped(notebook.notebook)


def test_the_kaggle_notebook(tmp_path, port, test_user, state_dir, kernel_env, ssh: SshClient):
    kernel_env["KAGGLE_KERNEL_RUN_TYPE"] = "Interactive"
    shutil.rmtree(tmp_path / "stubs" / "google")  # Kaggle has no google.colab
    notebook = Notebook(
        EXAMPLES / "kaggle_quickstart.ipynb", kernel_env, harness_cell(port, test_user, state_dir), tmp_path
    )
    check_markdown(notebook.notebook, "Internet", "Secrets", "NGROK_AUTHTOKEN")
    start = Notebook.index_of(notebook.cells, "start_ssh(authtoken=")
    assert 'UserSecretsClient().get_secret("NGROK_AUTHTOKEN")' in notebook.cells[start].source
    stop = Notebook.index_of(notebook.cells, "stop_ssh()")

    for index in notebook.run():
        cell = notebook.cells[index]
        if index == start:
            check_card(cell)
            login = ssh.run(connection_from_card(cell, test_user), "id -un")
            assert login.stdout.strip() == test_user, login.stderr
        if index == stop:
            assert our_processes(state_dir) == []

    check_pip_cells_are_skipped(notebook.notebook)


def test_the_vm_script_serves_until_ctrl_c(test_user, port, state_dir, ssh: SshClient):
    script = subprocess.Popen(
        [
            sys.executable,
            str(EXAMPLES / "ssh_on_a_vm.py"),
            *("--tunnel", "none", "--port", str(port), "--user", test_user, "--state-dir", str(state_dir)),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = []
        deadline = time.monotonic() + 60
        while not lines or not lines[-1].startswith("Serving until Ctrl-C"):
            assert time.monotonic() < deadline and script.poll() is None, (
                "".join(lines) + script.stderr.read()
            )
            lines.append(script.stdout.readline())
        printed = "".join(lines)
        password = re.search(r"password: (\S+)\n", printed).group(1)  # type: ignore[union-attr]
        assert re.search(rf"ssh -p {port} {test_user}@\S+\n", printed)
        login = ssh.run(Connection("127.0.0.1", port, test_user, password, port, "none"), "id -un")
        assert login.stdout.strip() == test_user, login.stderr
        status = subprocess.run(
            [sys.executable, "-m", "colab_ssh", "status", "--state-dir", str(state_dir)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert status.returncode == 0, status.stdout

        script.send_signal(signal.SIGINT)
        assert script.wait(timeout=30) == 0
        assert our_processes(state_dir) == []
        assert not (state_dir / "supervisor.pid").exists()
    finally:
        if script.poll() is None:
            script.kill()
            script.wait()
