"""An HTTP file server with a stated latency and bandwidth: the internet a fresh runtime downloads from.

The cold-start benchmark fetches openssh-server's packages (apt, over ``http://``) and the ngrok
agent (pyngrok's installer) from here instead of Debian's mirrors and ngrok's CDN, so that its
figure does not depend on the internet. Each new connection waits one round trip (the TCP
handshake), each request one more before its answer starts, and bodies are paced to the given
bandwidth. TLS, which the real CDN adds (one or two more round trips per connection), is left out.

It runs as its own process (``python benchmarks/file_server.py --root DIR``), so that the
benchmark's own Python work never holds a byte up; it prints ``READY <port>`` once it listens.
Standard library only, and no import of colab_ssh.
"""

from __future__ import annotations

import argparse
import http.server
import signal
import sys
import time
from pathlib import Path
from typing import Any

CHUNK = 16 * 1024


class _Handler(http.server.SimpleHTTPRequestHandler):
    rtt = 0.0
    bytes_per_second = 0.0
    protocol_version = "HTTP/1.1"  # keep-alive, as apt uses it

    def setup(self) -> None:
        time.sleep(self.rtt)  # the TCP handshake
        super().setup()

    def send_head(self) -> Any:
        time.sleep(self.rtt)  # the request travels there, the first byte of the answer back
        return super().send_head()

    def copyfile(self, source: Any, outputfile: Any) -> None:
        """The body at ``bytes_per_second``: each chunk leaves when the link would have carried it."""
        started = time.monotonic()
        sent = 0
        while chunk := source.read(CHUNK):
            outputfile.write(chunk)
            sent += len(chunk)
            if self.bytes_per_second > 0:
                due = started + sent / self.bytes_per_second
                if (wait := due - time.monotonic()) > 0:
                    time.sleep(wait)

    def log_message(self, *_args: object) -> None:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="folder to serve")
    parser.add_argument("--rtt-ms", type=float, default=20.0, help="round trip time (default 20)")
    parser.add_argument("--mbit", type=float, default=100.0, help="bandwidth in Mbit/s (default 100)")
    args = parser.parse_args(argv)
    _Handler.rtt = args.rtt_ms / 1000
    _Handler.bytes_per_second = args.mbit * 1e6 / 8

    def handler(*handler_args: Any) -> _Handler:
        return _Handler(*handler_args, directory=str(args.root))

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"READY {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
