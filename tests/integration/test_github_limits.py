"""The GitHub key fetch is bounded as a whole: in time (a server sending a byte at a time restarts
every per-read timeout, so only an overall deadline ends it) and in the number of keys."""

from __future__ import annotations

import contextlib
import http.server
import threading
import time
from collections.abc import Iterator

import pytest

from colab_ssh import KeySourceError, start_ssh
from colab_ssh import keys as keys_module
from colab_ssh.keys import fetch_github_keys

from ..support.host import ClientKey, our_processes
from ..support.http_server import serving, url_of
from ..support.stand_ins import GitHubStandIn


@contextlib.contextmanager
def trickling_server(body: bytes, *, headers_too: bool) -> Iterator[str]:
    """A hostile stand-in for github.com: valid answers, one byte every 50 ms.

    (github.com serves <user>.keys as text/plain, one key per line; this server says the same,
    only slowly, as the issue's trickling server did.)
    """
    stop = threading.Event()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            head = (
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
            )
            if not headers_too:
                self.wfile.write(head)
                head = b""
            with contextlib.suppress(OSError):
                for byte in head + body:
                    if stop.is_set():
                        return
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(0.05)

        def log_message(self, *_args: object) -> None:
            pass

    with serving(Handler) as server:
        try:
            yield url_of(server)
        finally:
            stop.set()


@pytest.mark.parametrize("headers_too", [False, True], ids=["body", "headers-and-body"])
def test_a_trickling_server_is_cut_at_the_overall_deadline(headers_too, client_key: ClientKey, monkeypatch):
    # The whole answer takes several seconds, each byte well within the per-read timeout.
    body = (client_key.public_line + "\n").encode() * 2
    monkeypatch.setattr(keys_module, "GITHUB_DEADLINE", 0.5)
    with (
        trickling_server(body, headers_too=headers_too) as url,
        pytest.raises(KeySourceError, match="did not send the keys within"),
    ):
        fetch_github_keys("octo-cat", base_url=url, timeout=2.0)


def test_a_fast_server_is_unaffected_by_the_deadline(client_key: ClientKey, github: GitHubStandIn):
    github.keys["octo-cat"] = client_key.public_line + "\n"
    assert [key.line for key in fetch_github_keys("octo-cat")] == [client_key.public_line]


def test_more_keys_than_the_limit_are_refused_and_change_nothing(
    test_user, port, state_dir, client_key: ClientKey, github: GitHubStandIn
):
    github.keys["hoarder"] = (client_key.public_line + "\n") * (keys_module.GITHUB_MAX_KEYS + 1)
    with pytest.raises(KeySourceError, match=f"at most {keys_module.GITHUB_MAX_KEYS}"):
        start_ssh(
            tunnel="none", port=port, user=test_user, state_dir=state_dir, quiet=True, github_user="hoarder"
        )
    assert not state_dir.exists()
    assert our_processes(state_dir) == []
    github.keys["hoarder"] = (client_key.public_line + "\n") * keys_module.GITHUB_MAX_KEYS
    assert len(fetch_github_keys("hoarder")) == keys_module.GITHUB_MAX_KEYS
