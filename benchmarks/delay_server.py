"""A TCP relay that delays every byte by a fixed time in each direction: a slow link on loopback.

Why a relay of our own: ``tc netem`` needs a network namespace and kernel modules this sandbox
lacks, and a latency (not a bandwidth limit) is what makes SSH logins and sshfs slow over a
tunnel. Data read at time t is written on at t + delay, in order and pipelined: a second chunk
does not wait for the first one's delay to end, as on a real long link.

It runs as its own process (``python benchmarks/delay_server.py --upstream-port P``), so that the
benchmark's own Python work never holds up a relayed byte; it prints ``READY <port>`` once it
listens. The TCP handshake with the relay itself is local and not delayed: a real tunnel adds one
more round trip to every new TCP connection, and that is left out here.

Standard library only, and no import of colab_ssh: it starts in a few tens of milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import sys

CHUNK = 64 * 1024


def _no_delay(writer: asyncio.StreamWriter) -> None:
    """Nagle's algorithm would hold small writes back until an ACK: a second, unintended delay."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    """Copy one direction: read as bytes arrive, write each chunk ``delay`` seconds later."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def send() -> None:
        while True:
            due, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                with contextlib.suppress(OSError):  # the far side may be gone already
                    if writer.can_write_eof():
                        writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    sender = asyncio.create_task(send())
    try:
        while True:
            data = await reader.read(CHUNK)
            queue.put_nowait((loop.time() + delay, data))
            if not data:
                break
        await sender
    finally:
        if not sender.done():
            sender.cancel()


async def _relay(
    client_reader: asyncio.StreamReader,
    client_writer: asyncio.StreamWriter,
    upstream_host: str,
    upstream_port: int,
    delay: float,
) -> None:
    try:
        upstream_reader, upstream_writer = await asyncio.open_connection(upstream_host, upstream_port)
    except OSError:
        client_writer.close()
        return
    _no_delay(client_writer)
    _no_delay(upstream_writer)
    directions = (
        asyncio.create_task(_pump(client_reader, upstream_writer, delay)),
        asyncio.create_task(_pump(upstream_reader, client_writer, delay)),
    )
    try:
        # Either side resetting ends both: a half-dead relay would hang the client.
        done, pending = await asyncio.wait(directions, return_when=asyncio.FIRST_EXCEPTION)
        for task in pending:
            task.cancel()
        for task in done:
            task.exception()  # a reset connection is normal here, not an error to log
    finally:
        for writer in (client_writer, upstream_writer):
            with contextlib.suppress(OSError):
                writer.close()


async def serve(
    listen_host: str, listen_port: int, upstream_host: str, upstream_port: int, delay: float
) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Cancelled at shutdown: end quietly (asyncio would log every cancelled connection).
        with contextlib.suppress(asyncio.CancelledError):
            await _relay(reader, writer, upstream_host, upstream_port, delay)

    server = await asyncio.start_server(handle, listen_host, listen_port)
    port = server.sockets[0].getsockname()[1]
    print(f"READY {port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream-port", type=int, required=True)
    parser.add_argument("--upstream-host", default="127.0.0.1")
    parser.add_argument("--listen-host", default="127.0.0.1")
    parser.add_argument("--listen-port", type=int, default=0)
    parser.add_argument("--delay-ms", type=float, default=50.0, help="one-way delay (default 50)")
    args = parser.parse_args(argv)
    asyncio.run(
        serve(
            args.listen_host, args.listen_port, args.upstream_host, args.upstream_port, args.delay_ms / 1000
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
