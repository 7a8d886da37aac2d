"""The registry of export formats: name -> :class:`ExportFormat`.

Adding a format is one renderer function and one :class:`ExportFormat` in a ``fmt_*`` module,
listed here; validation, sorting, capping and atomic writing come for free from
:mod:`botguard.sinks.export`.
"""

from __future__ import annotations

from botguard.errors import BotguardError
from botguard.sinks import fmt_cloud, fmt_data, fmt_firewall, fmt_text
from botguard.sinks.fmt_base import ExportFormat, ExportView, Rendered

FORMATS: dict[str, ExportFormat] = {
    f.name: f
    for f in (*fmt_text.FORMATS, *fmt_firewall.FORMATS, *fmt_cloud.FORMATS, *fmt_data.FORMATS)
}


class UnknownFormatError(BotguardError, ValueError):
    """An export format name that is not registered; the message lists the known ones."""


def get_format(name: str) -> ExportFormat:
    """The registered format called ``name``, or an error naming every known format."""
    try:
        return FORMATS[name]
    except KeyError:
        known = ", ".join(sorted(FORMATS))
        raise UnknownFormatError(
            f"unknown export format {name!r}; known formats: {known}",
            hint="pick one of the known formats",
        ) from None


__all__ = ["FORMATS", "ExportFormat", "ExportView", "Rendered", "UnknownFormatError", "get_format"]
