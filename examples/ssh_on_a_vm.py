"""Make this Linux machine an SSH host until Ctrl-C (run as root): `colab-ssh start --foreground`.

    python examples/ssh_on_a_vm.py --tunnel none --port 2222     # a VM whose port is reachable
    NGROK_AUTHTOKEN=... python examples/ssh_on_a_vm.py            # through an ngrok TCP tunnel

It takes every option of `colab-ssh start` (--user, --public-key, --github-user, --state-dir, ...),
prints the connection details, and stops sshd and the tunnel on Ctrl-C or SIGTERM, which suits a
systemd service. To leave it running in the background instead, use `colab-ssh start` and
`colab-ssh stop`.
"""

from __future__ import annotations

import sys

from colab_ssh.cli import main

if __name__ == "__main__":
    sys.exit(main(["start", "--foreground", *sys.argv[1:]]))
