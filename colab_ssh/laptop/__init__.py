"""The laptop side: ``colab-ssh connect``, ``disconnect`` and ``proxy``.

Everything here imports only the standard library, :mod:`colab_ssh.connect_code` and its own
modules: the laptop (Linux, macOS or Windows, no root) has no runtime to import.
"""
