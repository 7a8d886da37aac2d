"""Cloud and server formats: CloudFront standard logs, the Cloudflare and Caddy field maps.

AWS ALB logs are a ``log_format`` (``logformat.BUILTIN_FORMATS``); JSON lines are read by
``parsers.jsonlines``.

CloudFront lines differ from nginx-style ones enough (tab separation, URL-encoded agents) to
deserve their own capture step; all formats share ``normalize.finish``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar
from urllib.parse import unquote

import polars as pl

from botguard.parsers.normalize import finish

_CF_FIELDS = [
    "date", "time", "x-edge-location", "sc-bytes", "c-ip", "cs-method", "cs(Host)",
    "cs-uri-stem", "sc-status", "cs(Referer)", "cs(User-Agent)", "cs-uri-query", "cs(Cookie)",
    "x-edge-result-type", "x-edge-request-id", "x-host-header", "cs-protocol", "cs-bytes",
    "time-taken", "x-forwarded-for", "ssl-protocol", "ssl-cipher",
    "x-edge-response-result-type", "cs-protocol-version",
]


def _unquote_distinct(col: pl.Series) -> pl.Series:
    """CloudFront URL-encodes agents and referers (twice for some characters); decode once per
    distinct value."""
    uniq = col.drop_nulls().unique().to_list()
    mapping = {v: unquote(unquote(v)) for v in uniq if "%" in v}
    if not mapping:
        return col
    return col.replace(mapping)


@dataclass(frozen=True)
class CloudFrontParser:
    #: Keeps nothing from one chunk to the next: chunks may be parsed side by side.
    stateless: ClassVar[bool] = True

    name: str = "cloudfront"

    @property
    def fields(self) -> list[str]:
        return ["time_iso8601", "remote_addr", "request_method", "uri", "status"]

    def parse(self, lines: pl.LazyFrame, default_tz: str) -> tuple[pl.DataFrame, pl.DataFrame]:
        parts = pl.col("line").str.split("\t")

        def f(i: int) -> pl.Expr:
            return parts.list.get(i, null_on_oob=True)

        raw = lines.with_columns(
            (parts.list.len() >= 19).alias("_matched"),
            (f(0) + "T" + f(1) + "+00:00").alias("time_iso8601"),
            f(4).alias("remote_addr"),
            f(5).alias("request_method"),
            f(7).alias("uri"),
            f(11).alias("args"),
            f(8).alias("status"),
            f(3).alias("bytes_sent"),
            f(9).alias("http_referer"),
            f(10).alias("http_user_agent"),
            f(15).alias("host"),
            f(18).alias("request_time"),
            f(19).alias("http_x_forwarded_for"),
            f(23).alias("server_protocol"),
        )
        hits, rejects = finish(raw, default_tz)
        hits = hits.with_columns(
            _unquote_distinct(hits["user_agent"]).alias("user_agent"),
            _unquote_distinct(hits["referer"]).alias("referer"),
        )
        return hits, rejects


#: Cloudflare Logpush "http_requests" dataset field names.
CLOUDFLARE_FIELDS = {
    "ts": "EdgeStartTimestamp",
    "client_ip": "ClientIP",
    "method": "ClientRequestMethod",
    "path": "ClientRequestURI",
    "protocol": "ClientRequestProtocol",
    "host": "ClientRequestHost",
    "status": "EdgeResponseStatus",
    "bytes": "EdgeResponseBytes",
    "referer": "ClientRequestReferer",
    "user_agent": "ClientRequestUserAgent",
    "tls_fingerprint": "JA4",
}


#: Caddy's JSON access log (``log`` directive, ``format json``): headers are lists, the client
#: address is ``request.client_ip`` since Caddy 2.7, ``request.remote_ip`` before and
#: ``request.remote_addr`` ("ip:port") before 2.5.
CADDY_FIELDS = {
    "ts": "ts",
    "client_ip": "request.client_ip|request.remote_ip|request.remote_addr",
    "method": "request.method",
    "path": "request.uri",
    "protocol": "request.proto",
    "host": "request.host",
    "status": "status",
    "bytes": "size",
    "referer": "request.headers.Referer",
    "user_agent": "request.headers.User-Agent",
    "request_time_s": "duration",
}
