"""The connection details as an HTML card, for notebooks: pure text generation.

The card is one self-contained ``<div>`` (inline style and script: Colab's output frames run
inline scripts, and there is nothing to load). Every string in it passes through
``html.escape``: hosts and ports come from a tunnel service, users and paths from the caller,
and none of them may become markup. The script reads its data from ``data-`` attributes and
is the same text for every card, so no value is ever pasted into JavaScript.

Where a viewer strips scripts and styles (GitHub, nbviewer), the card still reads top to
bottom, the password stays folded in a ``<details>`` element, and copy buttons stay hidden
because they could not work.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING
from urllib.parse import quote

if TYPE_CHECKING:  # for the type checker only: connection.py imports this module for _repr_html_
    from .connection import Connection

__all__ = ["render_html", "vscode_url"]

_STYLE = """<style>
.colab-ssh-card{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;font-size:13px;
line-height:1.45;color:inherit;max-width:820px;border:1px solid rgba(128,128,128,.4);border-radius:8px;
padding:10px 14px 12px;margin:4px 0}
.colab-ssh-card .cs-head{display:flex;flex-wrap:wrap;align-items:baseline;gap:4px 10px;margin-bottom:8px}
.colab-ssh-card .cs-title{font-weight:600;font-size:14px}
.colab-ssh-card .cs-dot{color:#1e8e3e}
.colab-ssh-card .cs-muted{opacity:.7;font-weight:normal}
.colab-ssh-card .cs-grid{display:grid;grid-template-columns:max-content minmax(0,1fr) max-content;
gap:5px 10px;align-items:start}
.colab-ssh-card .cs-label{font-weight:600;padding-top:3px}
.colab-ssh-card code,.colab-ssh-card pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;
font-size:12.5px;background:rgba(128,128,128,.13);border-radius:4px;margin:0}
.colab-ssh-card code{padding:2px 6px;display:inline-block;white-space:pre-wrap;overflow-wrap:anywhere}
.colab-ssh-card pre{padding:6px 8px;white-space:pre;overflow-x:auto}
.colab-ssh-card h4{font-size:13px;margin:12px 0 4px;display:flex;justify-content:space-between;
align-items:center;gap:8px}
.colab-ssh-card ol{margin:2px 0;padding-left:22px}
.colab-ssh-card .cs-copy{font:inherit;font-size:12px;font-weight:normal;color:inherit;
background:transparent;cursor:pointer;border:1px solid rgba(128,128,128,.55);border-radius:4px;
padding:1px 8px;min-width:58px}
.colab-ssh-card .cs-copy:hover{background:rgba(128,128,128,.15)}
.colab-ssh-card:not([data-ready]) .cs-copy{display:none}
.colab-ssh-card details.cs-secret summary{cursor:pointer;padding-top:2px;user-select:none}
.colab-ssh-card details.cs-secret[open] summary{margin-bottom:3px}
.colab-ssh-card details.cs-secret .cs-hide,.colab-ssh-card details.cs-secret[open] .cs-show{display:none}
.colab-ssh-card details.cs-secret[open] .cs-hide{display:inline}
.colab-ssh-card .cs-note{margin:6px 0 0;opacity:.85}
.colab-ssh-card details.cs-manual{margin-top:10px}
.colab-ssh-card details.cs-manual summary{cursor:pointer;user-select:none}
.colab-ssh-card table{border-collapse:collapse;font-size:inherit;color:inherit}
.colab-ssh-card td{padding:1px 12px 1px 0;vertical-align:top}
.colab-ssh-card a{color:#1a73e8}
</style>"""

# The same for every card: binds each card not bound yet, so several cards on one page all work.
_SCRIPT = """<script>
(function () {
  function fallbackCopy(text) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.top = "0";
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    var copied = false;
    try { copied = document.execCommand("copy"); } catch (error) { copied = false; }
    document.body.removeChild(area);
    return copied;
  }
  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text).then(
        function () { return true; },
        function () { return fallbackCopy(text); });
    }
    return Promise.resolve(fallbackCopy(text));
  }
  function bind(card) {
    card.setAttribute("data-ready", "");
    card.addEventListener("click", function (event) {
      var button = event.target.closest ? event.target.closest("button.cs-copy") : null;
      if (!button || !card.contains(button)) { return; }
      copyText(button.getAttribute("data-copy") || "").then(function (copied) {
        button.textContent = copied ? "Copied" : "Ctrl+C";
        setTimeout(function () { button.textContent = "Copy"; }, 1500);
      });
    });
  }
  Array.prototype.forEach.call(
    document.querySelectorAll("div.colab-ssh-card:not([data-ready])"), bind);
})();
</script>"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _command(text: str, css_class: str) -> str:
    """A command in a <code> element; <wbr> after commas lets sshfs's long option list wrap there."""
    return f'<code class="{css_class}">{_e(text).replace(",", ",<wbr>")}</code>'


def _copy_button(text: str, what: str) -> str:
    return (
        f'<button type="button" class="cs-copy" title="Copy {_e(what)}" data-copy="{_e(text)}">Copy</button>'
    )


def _row(label: str, value_html: str, copy: str | None, what: str) -> str:
    button = _copy_button(copy, what) if copy is not None else "<span></span>"
    return f'<div class="cs-label">{_e(label)}</div><div>{value_html}</div>{button}'


def _password_row(connection: Connection) -> str:
    if connection.password is None:
        return _row("login", "with your SSH key (password login is off)", None, "")
    secret = (
        '<details class="cs-secret"><summary><span class="cs-show">Show password</span>'
        '<span class="cs-hide">Hide password</span></summary>'
        f'<code class="cs-password">{_e(connection.password)}</code></details>'
    )
    return _row("password", secret, connection.password, "the password")


def vscode_url(connection: Connection) -> str:
    """Opens the notebook's folder in VS Code over Remote-SSH, once ``Host colab`` is in ~/.ssh/config."""
    folder = quote(connection.sshfs_path, safe="/")
    return f"vscode://vscode-remote/ssh-remote+{connection.config_alias}{folder}"


def _block(title_html: str, text: str, what: str) -> str:
    return f"<h4><span>{title_html}</span>{_copy_button(text, what)}</h4><pre>{_e(text)}</pre>"


def _connect_row(connection: Connection) -> str:
    command = connection.connect_command
    if command is None:
        return ""
    return _row("on your laptop", _command(command, "cs-connect"), command, "the connect line")


def _connect_note(connection: Connection) -> str:
    if connection.connect_command is None:
        return ""
    return (
        '<div class="cs-note">The line <i>on your laptop</i> (with this package installed there too:'
        " <code>pip</code> or <code>pipx</code>, as in the notebook) writes <code>Host "
        f"{_e(connection.config_alias)}</code> into <code>~/.ssh/config</code> and pins the host key:"
        f" then <code>ssh {_e(connection.config_alias)}</code>. No password or token is in it.</div>"
    )


def _vscode_section(connection: Connection) -> str:
    setup = (
        "Run the line <i>on your laptop</i> above (or add the block below to <code>~/.ssh/config</code>)."
        if connection.connect_command is not None
        else "Add the block below to <code>~/.ssh/config</code>."
    )
    return (
        "<h4><span>VS Code</span></h4><ol>"
        "<li>Install the <b>Remote - SSH</b> extension.</li>"
        f"<li>{setup}</li>"
        "<li><i>Remote-SSH: Connect to Host&hellip;</i> &rarr; "
        f"<b>{_e(connection.config_alias)}</b>, or open "
        f'<a class="cs-vscode" href="{_e(vscode_url(connection))}" target="_blank" rel="noopener">'
        f"{_e(connection.sshfs_path)} in VS Code</a>.</li></ol>"
    )


def _fingerprints_section(connection: Connection) -> str:
    if not connection.host_keys:
        return ""
    rows = "".join(
        f"<tr><td>{_e(key.kind)}</td><td><code>{_e(key.fingerprint)}</code></td></tr>"
        for key in connection.host_keys
    )
    return (
        "<h4><span>Host-key fingerprints "
        '<span class="cs-muted">(compare with what ssh shows on first connect)</span></span></h4>'
        f'<table class="cs-keys">{rows}</table>'
    )


def _hints_section(connection: Connection) -> str:
    if not connection.client_hints:
        return ""
    items = "".join(f"<li><code>{_e(hint)}</code></li>" for hint in connection.client_hints)
    return f"<h4><span>Your computer needs</span></h4><ul>{items}</ul>"


def _manual_section(connection: Connection) -> str:
    """What ``colab-ssh connect`` writes, to do by hand: folded away when there is a connect line."""
    section = _hints_section(connection) + _block(
        "<code>~/.ssh/config</code> "
        f'<span class="cs-muted">then <code>ssh {_e(connection.config_alias)}</code></span>',
        connection.ssh_config,
        "the ~/.ssh/config block",
    )
    if connection.known_hosts:
        section += _block(
            '<code>~/.ssh/known_hosts</code> <span class="cs-muted">lines: trust it before connecting</span>',
            connection.known_hosts,
            "the known_hosts lines",
        )
    if connection.connect_command is None:
        return section
    return (
        '<details class="cs-manual"><summary>By hand instead: the <code>~/.ssh/config</code> block'
        f"{' and <code>known_hosts</code> lines' if connection.known_hosts else ''}</summary>"
        f"{section}</details>"
    )


def render_html(connection: Connection) -> str:
    """The card: pure, so the exact markup is testable (and Connection._repr_html_ can return it).

    The connect line comes first; the config block and known_hosts lines it writes follow, folded,
    for doing it by hand."""
    head = (
        '<div class="cs-head"><span class="cs-title"><span class="cs-dot">&#9679;</span>'
        " SSH server is up</span>"
        f'<code class="cs-address">{_e(connection.host)}:{_e(connection.port)}</code>'
        f'<span class="cs-muted">tunnel: {_e(connection.tunnel)}</span></div>'
    )
    grid = (
        '<div class="cs-grid">'
        + _connect_row(connection)
        + _row("ssh", _command(connection.ssh_command, "cs-ssh"), connection.ssh_command, "the ssh command")
        + _password_row(connection)
        + _row(
            "sshfs",
            _command(connection.sshfs_command, "cs-sshfs"),
            connection.sshfs_command,
            "the sshfs command",
        )
        + "</div>"
    )
    body = (
        head
        + grid
        + _connect_note(connection)
        + _vscode_section(connection)
        + _manual_section(connection)
        + _fingerprints_section(connection)
    )
    return f'<div class="colab-ssh-card">{_STYLE}{body}{_SCRIPT}</div>'
