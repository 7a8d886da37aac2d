"""Line-oriented blocklists: plain lists, nginx, Apache and HAProxy includes.

Each renderer only wraps already-validated canonical addresses in fixed syntax; nothing from
the logs except the address itself reaches these files.
"""

from __future__ import annotations

from botguard.sinks.fmt_base import ExportFormat, ExportView, comment_block, text_lines


def _entries(view: ExportView) -> list[str]:
    return view.entries["entry"].to_list()


def render_plain(view: ExportView) -> bytes:
    """One address or network a line: hosts bare, networks as CIDR."""
    return text_lines(_entries(view), view.header)


def render_cidr(view: ExportView) -> bytes:
    """Every line a CIDR (hosts as /32 or /128), for tools that insist on a prefix."""
    return text_lines(view.entries["cidr"].to_list(), view.header)


def render_nginx_deny(view: ExportView) -> bytes:
    """``deny ADDR;`` lines, to ``include`` in an http, server or location block."""
    return text_lines([f"deny {e};" for e in _entries(view)], view.header)


def render_nginx_geo(view: ExportView) -> bytes:
    """A ``geo`` block (http context) that sets ``$botguard_block`` to 1 for listed clients.

    A variable lets the operator decide what to do (``return 403``, rate limit, log) and keeps
    one lookup per request however long the list is.
    """
    lines = ["geo $botguard_block {", "    default 0;"]
    lines.extend(f"    {e} 1;" for e in _entries(view))
    lines.append("}")
    return text_lines(lines, view.header)


def render_apache(view: ExportView) -> bytes:
    """``Require not ip`` lines; Apache only allows negated requires inside ``<RequireAll>``."""
    lines = ["<RequireAll>", "    Require all granted"]
    lines.extend(f"    Require not ip {e}" for e in _entries(view))
    lines.append("</RequireAll>")
    return text_lines(lines, view.header)


def render_haproxy(view: ExportView) -> bytes:
    """A pattern file for ``acl bad src -f FILE``: one network a line, ``#`` comments."""
    return (comment_block(view.header) + "".join(f"{e}\n" for e in _entries(view))).encode("ascii")


FORMATS: tuple[ExportFormat, ...] = (
    ExportFormat(
        "plain",
        render_plain,
        "one address or CIDR a line",
        ".txt",
        reduce="none",
    ),
    ExportFormat(
        "cidr",
        render_cidr,
        "the fewest CIDR networks covering every entry",
        ".txt",
        reduce="collapse",
    ),
    ExportFormat(
        "nginx-deny",
        render_nginx_deny,
        "nginx deny rules",
        ".conf",
        notes=("use: include this file in an nginx http, server or location block",),
    ),
    ExportFormat(
        "nginx-geo",
        render_nginx_geo,
        "nginx geo block setting $botguard_block",
        ".conf",
        notes=("use: include in the nginx http block, then: if ($botguard_block) { return 403; }",),
    ),
    ExportFormat(
        "apache",
        render_apache,
        "Apache httpd 2.4 Require rules",
        ".conf",
        notes=("use: Include this file inside a <Directory> or <Location> section",),
    ),
    ExportFormat(
        "haproxy",
        render_haproxy,
        "HAProxy ACL pattern file",
        ".acl",
        notes=("use: acl botguard_block src -f THIS_FILE and http-request deny if botguard_block",),
    ),
)
