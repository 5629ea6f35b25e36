"""The cloudflared release colab_ssh pins, for the runtime and the laptop alike (standard library only).

The SHA-256 of each asset as listed in the release notes of
https://github.com/cloudflare/cloudflared/releases/tag/2026.10.0 (also the ``digest`` field of
https://api.github.com/repos/cloudflare/cloudflared/releases/tags/2026.10.0). The page itself was
out of reach when pinning: each digest was read from several public projects that pin the same
release and quote those notes, and only digests that agreed everywhere they appeared were kept.
Linux ones first (the runtime's), then the laptop's: the Windows .exe files, and the macOS .tgz
archives, which hold one member, ``cloudflared``. When bumping VERSION, take every digest from the
release page itself.
"""

from __future__ import annotations

__all__ = ["RELEASES", "SHA256", "VERSION", "release_url"]

VERSION = "2026.10.0"
RELEASES = "https://github.com/cloudflare/cloudflared/releases/download"
SHA256 = {
    "cloudflared-linux-amd64": "d33ff2d14475178d2012c2c56beba87389ac5ded27649519f198a7d3134a99db",
    "cloudflared-linux-arm64": "e6422b9d4f72d3194bc5a38676f13667c06666523217b842a877d72a80b5ac08",
    "cloudflared-windows-amd64.exe": "86aee4017b26625cee8484c113558f48effa4cd47f7aa05fcf425604e5d2b23c",
    "cloudflared-windows-386.exe": "0630a8779e9823a1a3b091698b8e71874e0f7b205559219f52fdd301466b5546",
    "cloudflared-darwin-amd64.tgz": "903845b81828c8cb3c5d13d816a2de71c06a3da5785469df8eb0e1b736d92f9f",
    "cloudflared-darwin-arm64.tgz": "a2f79ff7b9420aa537d74af239f376da170bbabeb529aec416002adac6a72e70",
}


def release_url(asset: str, releases: str = RELEASES) -> str:
    """Where GitHub serves ``asset`` of the pinned release."""
    return f"{releases}/{VERSION}/{asset}"
