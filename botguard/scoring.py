"""Evidence → one score per client, with reasons ordered by contribution.

Positive evidence (rules with weight > 0, the classifier, the anomaly detector) combines as a
noisy-OR: independent reasons each close part of the remaining gap to 1, so no single weak
signal blocks and several agreeing ones do. Evidence of a person (negative weights) scales
the result down. The classifier can add at most ``model.weight``.

Noisy-OR assumes the reasons are independent; rules that measure one behaviour twice (pace in
product pages and in all pages, say) are not, so a rule ``group`` counts once: its strongest
match for the client.
"""

from __future__ import annotations

import polars as pl

from botguard.config.models import Config

EVIDENCE_SCHEMA = {
    "client": pl.String, "rule": pl.String, "weight": pl.Float64, "kind": pl.String, "reason": pl.String,
    "group": pl.String,
}


def model_evidence(model_scores: pl.DataFrame | None, cfg: Config) -> pl.DataFrame:
    """Classifier and anomaly scores as evidence rows (only where they add something)."""
    if model_scores is None or model_scores.is_empty() or not cfg.model.enabled:
        return pl.DataFrame(schema=EVIDENCE_SCHEMA)
    w, aw = cfg.model.weight, cfg.model.anomaly_weight
    # The classifier speaks only with enough evidence (a few requests say little about anyone)
    # and only when confident; its weight grows from 0 at p=min_score to w at p=1.
    lo = cfg.model.min_score
    enough = pl.col("requests") >= cfg.model.min_requests
    bot = model_scores.filter(enough & (pl.col("model_score") >= lo)).select(
        "client",
        pl.lit("model").alias("rule"),
        ((pl.col("model_score") - lo) / (1 - lo) * w).alias("weight"),
        pl.lit("model").alias("kind"),
        pl.format("classifier: bot probability {}", pl.col("model_score").round(2)).alias("reason"),
        pl.lit("model").alias("group"),
    )
    frames = [bot]
    if aw > 0 and "anomaly_score" in model_scores.columns:
        frames.append(
            model_scores.filter(enough & (pl.col("anomaly_score") >= 0.5)).select(
                "client",
                pl.lit("anomaly").alias("rule"),
                (pl.col("anomaly_score") * aw).alias("weight"),
                pl.lit("anomaly").alias("kind"),
                pl.format("unlike known traffic: anomaly {}", pl.col("anomaly_score").round(2)).alias("reason"),
                pl.lit("anomaly").alias("group"),
            )
        )
    return pl.concat(frames).cast(EVIDENCE_SCHEMA)  # type: ignore[arg-type]


def score(clients: pl.DataFrame, evidence: pl.DataFrame) -> pl.DataFrame:
    """client, score, reasons (strongest first), kind (of the strongest positive evidence),
    one row per client in the order of ``clients``."""
    ev = evidence.filter(pl.col("weight") != 0)
    group = pl.coalesce("group", "rule") if "group" in ev.columns else pl.col("rule")
    pos = pl.col("weight").filter(pl.col("weight") > 0)
    neg = pl.col("weight").filter(pl.col("weight") < 0).abs()
    # Strongest first, then one row per (client, group, direction): the rest of a group is the
    # same evidence again.
    ordered = (
        ev.with_columns(group.alias("_group"), pl.col("weight").abs().alias("_strength"))
        .sort(["client", "_strength"], descending=[False, True], maintain_order=True)
        .filter(pl.int_range(pl.len()).over("client", "_group", pl.col("weight") > 0) == 0)
    )
    agg = ordered.group_by("client", maintain_order=True).agg(
        (1 - (1 - pos.clip(0, 1)).product()).alias("_pos"),
        (1 - neg.clip(0, 1)).product().alias("_keep"),
        pl.col("reason").filter(pl.col("weight") > 0).alias("_for"),
        pl.col("reason").filter(pl.col("weight") < 0).alias("_against"),
        pl.col("kind").filter(pl.col("weight") > 0).first().alias("kind"),
        pl.col("rule").filter(pl.col("weight") > 0).alias("rules"),
    )
    out = clients.select("client").join(agg, on="client", how="left", maintain_order="left").with_columns(
        (pl.col("_pos").fill_null(0.0) * pl.col("_keep").fill_null(1.0)).clip(0, 1).round(4).alias("score"),
        pl.concat_list(
            pl.col("_for").fill_null(pl.lit([], dtype=pl.List(pl.String))),
            pl.col("_against").fill_null(pl.lit([], dtype=pl.List(pl.String))).list.eval(pl.lit("against: ") + pl.element()),
        ).alias("reasons"),
        pl.col("rules").fill_null(pl.lit([], dtype=pl.List(pl.String))),
    )
    return out.select("client", "score", "reasons", "kind", "rules")
