"""Make this Linux machine an SSH host until Ctrl-C (run as root).

    python examples/ssh_on_a_vm.py --tunnel none --port 2222     # a VM whose port is reachable
    NGROK_AUTHTOKEN=... python examples/ssh_on_a_vm.py            # through an ngrok TCP tunnel

The ngrok agent lives only as long as this process, so the script stays in the foreground
and stops sshd and the tunnel when you press Ctrl-C.
"""

from __future__ import annotations

import argparse
import signal
import sys

from colab_ssh import ColabSSHError, start_ssh, stop_ssh


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tunnel", default="ngrok", choices=["ngrok", "none"])
    parser.add_argument("--port", type=int, default=22)
    parser.add_argument("--region", default=None, help="ngrok region (us, eu, ap, au, sa, jp, in)")
    arguments = parser.parse_args()
    try:
        start_ssh(tunnel=arguments.tunnel, port=arguments.port, region=arguments.region)
    except ColabSSHError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print("Serving; press Ctrl-C to stop sshd and the tunnel.", flush=True)
    try:
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    except KeyboardInterrupt:
        pass
    finally:
        stop_ssh()
    return 0


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    sys.exit(main())
