"""Payloads for cloud WAF APIs: AWS WAFv2 IP sets and Cloudflare IP lists.

JSON has no comments, so these carry no header; provenance is in the file name and the
caller's report. Limits below are the services' documented quotas.
"""

from __future__ import annotations

import json

import polars as pl

from botguard.sinks.fmt_base import ExportFormat, ExportView, comment_expr

#: Addresses per AWS WAF IP set; one set holds a single IP version.
AWS_MAX_ADDRESSES = 10_000
#: Items per Cloudflare custom list (account quota on most plans).
CLOUDFLARE_MAX_ITEMS = 10_000
CLOUDFLARE_MAX_COMMENT = 500


def _array(items: list[str], indent: str = "  ") -> str:
    """A JSON array, one item a line (readable diffs; json.dumps with indent is slow)."""
    if not items:
        return "[]"
    return "[\n" + ",\n".join(indent + item for item in items) + "\n" + indent[:-2] + "]"


def render_aws_waf(view: ExportView) -> dict[str, bytes]:
    """Two ``update-ip-set`` payloads, ``ipv4`` and ``ipv6``: AWS wants one IP set per version.

    Addresses are always CIDR (``/32``, ``/128`` for hosts), as the API requires.
    """
    out = {}
    for key, family in (("ipv4", 4), ("ipv6", 6)):
        cidrs = view.entries.filter(pl.col("family") == family)["cidr"].to_list()
        body = _array([json.dumps(c) for c in cidrs], "    ")
        out[key] = ('{\n  "Addresses": ' + body + "\n}\n").encode("ascii")
    return out


def render_cloudflare(view: ExportView) -> bytes:
    """Items for the Cloudflare Lists API: ``[{"ip": ..., "comment": ...}]``."""
    score = (
        pl.when(pl.col("score").is_null())
        .then(pl.lit("n/a"))
        .otherwise(pl.col("score").round(2).cast(pl.String))
    )
    reasons = pl.col("reasons").list.join(", ").fill_null("")
    comment = comment_expr(
        pl.concat_str([pl.lit("botguard score "), score, pl.lit(": "), reasons]),
        CLOUDFLARE_MAX_COMMENT,
    )
    items = view.entries.select(
        pl.struct(pl.col("entry").alias("ip"), comment.alias("comment")).struct.json_encode()
    ).to_series()
    return (_array(items.to_list()) + "\n").encode("ascii")


FORMATS: tuple[ExportFormat, ...] = (
    ExportFormat(
        "aws-waf",
        render_aws_waf,
        "AWS WAFv2 update-ip-set payloads, one per IP version",
        ".json",
        comments=False,
        min_prefix={4: 1, 6: 1},
        limit=AWS_MAX_ADDRESSES,
        limit_per_family=True,
    ),
    ExportFormat(
        "cloudflare",
        render_cloudflare,
        "Cloudflare IP list items",
        ".json",
        comments=False,
        # Cloudflare lists take IPv4 /8../32 and IPv6 /12../64.
        min_prefix={4: 8, 6: 12},
        max_prefix={6: 64},
        details=True,
        limit=CLOUDFLARE_MAX_ITEMS,
    ),
)
