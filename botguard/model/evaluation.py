"""Evaluation of the whole decision pipeline (rules + model + policy) against labels.

What counts is what would be blocked: "caught" means action ``block``. Challenges are
reported beside it, since a challenge costs a real customer little.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from botguard.config.models import Config

ACTIONS = ["block", "challenge", "monitor", "allow"]


def evaluate_frame(decisions: pl.DataFrame, labels: pl.DataFrame) -> dict[str, Any]:
    from sklearn.metrics import average_precision_score

    data = labels.join(decisions.select("client", "action", "score", "verified_crawler"), on="client", how="inner")
    missing = len(labels) - len(data)
    y_bad = (data["label"] == "bad_bot").to_numpy()
    blocked = (data["action"] == "block").to_numpy()
    per_label: dict[str, dict[str, Any]] = {}
    for label in ("human", "good_bot", "bad_bot"):
        truth = (data["label"] == label).to_numpy()
        # Predicted label: bad_bot if blocked; good_bot if a verified crawler; else human.
        pred = np.where(blocked, "bad_bot", np.where(data["verified_crawler"].is_not_null().to_numpy(), "good_bot", "human"))
        p = pred == label
        tp = int((truth & p).sum())
        precision = tp / p.sum() if p.sum() else 0.0
        recall = tp / truth.sum() if truth.sum() else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_label[label] = {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4), "support": int(truth.sum())}
    per_kind: dict[str, dict[str, Any]] = {}
    for (kind, label), grp in data.group_by(["kind", "label"], maintain_order=True):
        n = len(grp)
        caught = int((grp["action"] == "block").sum())
        challenged = int((grp["action"] == "challenge").sum())
        per_kind[f"{label}/{kind}"] = {"clients": n, "caught": caught, "challenged": challenged, "recall": round(caught / n, 4) if n else 0.0}
    per_kind = dict(sorted(per_kind.items()))
    matrix = [[int(((data["label"] == lab) & (data["action"] == act)).sum()) for act in ACTIONS] for lab in ("human", "good_bot", "bad_bot")]
    pr_auc = float(average_precision_score(y_bad, data["score"].to_numpy())) if y_bad.any() and (~y_bad).any() else 0.0
    humans = data.filter(pl.col("label") == "human")
    return {
        "clients_labelled": len(labels),
        "clients_missing_from_logs": missing,
        "bad_bot_precision": per_label["bad_bot"]["precision"],
        "bad_bot_recall": per_label["bad_bot"]["recall"],
        "human_block_rate": round(float((humans["action"] == "block").sum()) / len(humans), 5) if len(humans) else 0.0,
        "good_bot_blocked": int(((data["label"] == "good_bot") & (data["action"] == "block")).sum()),
        "per_label": per_label,
        "per_kind": per_kind,
        "confusion_matrix": {"labels": ["human", "good_bot", "bad_bot"], "actions": ACTIONS, "matrix": matrix},
        "pr_auc_bad_bot": round(pr_auc, 4),
    }


def evaluate_logs(logs: list[str], labels_path: Path, cfg: Config, *, format: str | None = None, ranges: Any = None) -> dict[str, Any]:
    from botguard.model.training import read_labels
    from botguard.pipeline import compute_features, score_clients

    labels = read_labels(labels_path)
    feats = compute_features(logs, cfg, format=format, ranges=ranges)
    result = score_clients(feats.clients, cfg, product_regs=feats.product_regs, force=True)
    return evaluate_frame(result.decisions, labels)
