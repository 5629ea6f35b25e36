"""The laptop side: ``colab-ssh connect``, ``disconnect`` and ``proxy``.

Everything here imports only the standard library, :mod:`colab_ssh.connect_code` and its own
modules (and, for the cloudflared download, :mod:`colab_ssh.https_download` and
:mod:`colab_ssh.cloudflared_pins`, standard library only too, which the runtime shares): the laptop
(Linux, macOS or Windows, no root) has no runtime to import.
"""
