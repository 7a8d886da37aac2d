"""Parsers: raw lines → the normalized hits frame. A small registry of format types.

Adding a format is one module with a class that has ``name``, ``fields`` and
``parse(lines, default_tz) -> (hits, rejects)``, plus one line in ``_BUILD``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import polars as pl

from botguard.config.models import Config, FormatSpec
from botguard.errors import ConfigError
from botguard.parsers.jsonlines import JsonLinesParser
from botguard.parsers.logformat import BUILTIN_FORMATS, RegexLogParser
from botguard.parsers.presets import CADDY_FIELDS, CLOUDFLARE_FIELDS, CloudFrontParser
from botguard.parsers.w3c import W3CParser


class LogParser(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def fields(self) -> list[str]: ...

    def parse(self, lines: pl.LazyFrame, default_tz: str) -> tuple[pl.DataFrame, pl.DataFrame]: ...


def _from_spec(name: str, spec: FormatSpec) -> LogParser:
    return _BUILD[spec.type](name, spec)


_BUILD: dict[str, Callable[[str, FormatSpec], LogParser]] = {
    "combined": lambda n, s: RegexLogParser(n, BUILTIN_FORMATS["combined"]),
    "common": lambda n, s: RegexLogParser(n, BUILTIN_FORMATS["common"]),
    "vcombined": lambda n, s: RegexLogParser(n, BUILTIN_FORMATS["vcombined"]),
    "nginx": lambda n, s: RegexLogParser(n, s.log_format or ""),
    "json": lambda n, s: JsonLinesParser(n, dict(s.fields)),
    "alb": lambda n, s: RegexLogParser(n, BUILTIN_FORMATS["alb"]),
    "cloudfront": lambda n, s: CloudFrontParser(n),
    "cloudflare": lambda n, s: JsonLinesParser(n, dict(CLOUDFLARE_FIELDS)),
    "caddy": lambda n, s: JsonLinesParser(n, dict(CADDY_FIELDS)),
    "haproxy": lambda n, s: RegexLogParser(n, BUILTIN_FORMATS["haproxy"]),
    "w3c": lambda n, s: W3CParser(n),
}

BUILTIN_NAMES = ("combined", "common", "vcombined", "alb", "cloudfront", "cloudflare", "caddy", "w3c", "haproxy")


def known_formats(cfg: Config) -> list[str]:
    return ["auto", *BUILTIN_NAMES, *sorted(cfg.ingest.formats)]


def get_parser(name: str, cfg: Config) -> LogParser:
    """A built-in format, or a named entry of ``ingest.formats``."""
    if name in cfg.ingest.formats:
        return _from_spec(name, cfg.ingest.formats[name])
    if name in BUILTIN_NAMES:
        return _BUILD[name](name, FormatSpec(type=name))  # type: ignore[arg-type]
    raise ConfigError(
        [f"--format: unknown format {name!r} (known: {', '.join(known_formats(cfg))})"],
        hint="define your own under ingest.formats in a config file",
    )


def sniff_candidates(cfg: Config) -> list[LogParser]:
    """Formats tried by --format auto, most specific first (ties go to the earlier one)."""
    names = ["vcombined", "combined", "alb", "haproxy", "cloudfront", "cloudflare", "caddy", "w3c", *sorted(cfg.ingest.formats), "common"]
    return [get_parser(n, cfg) for n in names]
