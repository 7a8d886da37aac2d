"""The bench log rewritten in the cloud formats botguard reads: Cloudflare Logpush JSON lines
and AWS ALB access logs, the same hits in each, so their parse rates compare with the
combined log's. Written once into the bench cache (never the repository)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import polars as pl

#: Lines taken from the bench log for each format.
FORMAT_LINES = 1_000_000

_ALB_TAIL = (
    '" ECDHE-RSA-AES128-GCM-SHA256 TLSv1.2 arn:aws:elasticloadbalancing:us-east-1:123456789012:'
    'targetgroup/shop/73e2d6bc24d8a067 "Root=1-58337281-1d84f3d73c47ec4e58577259" "shop.example" '
    '"arn:aws:acm:us-east-1:123456789012:certificate/1234" 0 2023-10-10T13:55:36.137000Z '
    '"forward" "-" "-" "10.0.0.1:80" "200" "-" "-"'
)


def _target() -> pl.Expr:
    return pl.col("path") + pl.when(pl.col("query").is_not_null()).then("?" + pl.col("query")).otherwise(pl.lit(""))


def cloudflare(hits: pl.DataFrame, out: Path) -> None:
    hits.select(
        pl.col("ts").dt.epoch("ns").alias("EdgeStartTimestamp"),
        pl.col("client_ip").alias("ClientIP"),
        pl.col("method").alias("ClientRequestMethod"),
        _target().alias("ClientRequestURI"),
        pl.col("host").fill_null("shop.example").alias("ClientRequestHost"),
        pl.lit("HTTP/1.1").alias("ClientRequestProtocol"),
        pl.col("status").alias("EdgeResponseStatus"),
        pl.col("bytes").alias("EdgeResponseBytes"),
        pl.col("referer").alias("ClientRequestReferer"),
        pl.col("user_agent").alias("ClientRequestUserAgent"),
        pl.lit("DE").alias("ClientCountry"),
        pl.lit("8a3b2c1d0e9f8a7b").alias("RayID"),
    ).write_ndjson(out)


def alb(hits: pl.DataFrame, out: Path) -> None:
    lines = hits.select(pl.concat_str([
        pl.lit("https "), pl.col("ts").dt.strftime("%Y-%m-%dT%H:%M:%S%.6fZ"),
        pl.lit(" app/shop-lb/50dc6c495c0c9188 "), pl.col("client_ip").fill_null("-"),
        pl.lit(":2817 10.0.0.1:80 0.001 0.048 0.000 "), pl.col("status").cast(pl.String).fill_null("-"), pl.lit(" "),
        pl.col("status").cast(pl.String).fill_null("-"), pl.lit(" 120 "), pl.col("bytes").fill_null(0).cast(pl.String),
        pl.lit(' "'), pl.col("method").fill_null("-"), pl.lit(" https://shop.example:443"), _target().fill_null("/"), pl.lit(' HTTP/1.1" "'),
        pl.col("user_agent").fill_null("-").str.replace_all('"', '\\"', literal=True), pl.lit(_ALB_TAIL),
    ]).alias("line"))
    lines.write_csv(out, include_header=False, quote_style="never")


WRITERS = {"cloudflare": cloudflare, "alb": alb}


def ensure_format_logs(log: Path, cache: Path, botguard: str) -> dict[str, tuple[Path, int, int]]:
    """``{format: (path, lines, bytes)}``, written from the first ``FORMAT_LINES`` hits of
    ``log`` (parsed by botguard itself) unless already in ``cache``."""
    cache.mkdir(parents=True, exist_ok=True)
    paths = {name: cache / f"{name}.log" for name in WRITERS}
    if not all(p.exists() for p in paths.values()):
        hits_path = cache / "hits.parquet"
        subprocess.run([botguard, "parse", str(log), "--format", "combined", "--output", str(hits_path),
                        "--json"], check=True, stdout=subprocess.DEVNULL)
        hits = pl.read_parquet(hits_path).head(FORMAT_LINES)
        for name, write in WRITERS.items():
            partial = paths[name].with_suffix(".partial")
            write(hits, partial)
            partial.replace(paths[name])
        hits_path.unlink()
    out = {}
    for name, path in paths.items():
        with path.open("rb") as fh:
            n = sum(block.count(b"\n") for block in iter(lambda: fh.read(1 << 24), b""))
        out[name] = (path, n, path.stat().st_size)
    return out


_NDJSON_READ = "import sys, polars as pl; df = pl.read_ndjson(sys.argv[1], infer_schema_length=None); print(len(df))"


def ndjson_floor() -> list[str]:
    """The bare Polars NDJSON read of a file (its path appended)."""
    return [sys.executable, "-c", _NDJSON_READ]
