"""Evaluation of the whole decision pipeline (rules + model + policy) against labels.

What counts is what would be blocked: "caught" means action ``block``. Challenges are
reported beside it as a second cut-off, since a challenge costs a real customer little.

A ranking metric alone can flatter: PR-AUC of a useless score equals the bad-bot share, so
on a set that is 70% bots 0.8 means little and says nothing about what was actually
blocked. Hence the share, ROC-AUC, and precision/recall at the actual cut-offs sit beside it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from botguard.config.models import Config

ACTIONS = ["block", "challenge", "monitor", "allow"]
LABELS = ("human", "good_bot", "bad_bot")
# Cut-off name → actions that count as "flagged a client as a bad bot".
CUTOFFS: dict[str, tuple[str, ...]] = {"block": ("block",), "block+challenge": ("block", "challenge")}


def evaluate_frame(decisions: pl.DataFrame, labels: pl.DataFrame) -> dict[str, Any]:
    """Metrics of ``decisions`` (client, action, score, verified_crawler) against ``labels``
    (client, label, optional kind). Labelled clients absent from the decisions are counted
    and left out of every rate; undefined metrics are ``None`` with an entry in ``notes``."""
    data = labels.join(decisions.select("client", "action", "score", "verified_crawler"), on="client", how="inner")
    notes: list[str] = []
    y_bad = (data["label"] == "bad_bot").to_numpy()
    per_label = _per_label(data)
    cutoffs = {name: _cutoff(data, actions) for name, actions in CUTOFFS.items()}
    pr_auc, roc_auc = _ranking(y_bad, data["score"].to_numpy(), notes)
    matrix = [[int(((data["label"] == lab) & (data["action"] == act)).sum()) for act in ACTIONS] for lab in LABELS]
    return {
        "clients_labelled": len(labels),
        "clients_missing_from_logs": len(labels) - len(data),
        "clients_evaluated": len(data),
        "bad_bots_evaluated": int(y_bad.sum()),
        "prevalence_bad_bot": round(float(y_bad.mean()), 4) if len(data) else None,
        "bad_bot_precision": per_label["bad_bot"]["precision"],
        "bad_bot_recall": per_label["bad_bot"]["recall"],
        "bad_bot_precision_bc": cutoffs["block+challenge"]["precision"],
        "bad_bot_recall_bc": cutoffs["block+challenge"]["recall"],
        "human_block_rate": cutoffs["block"]["human_rate"],
        "human_challenge_or_block_rate": cutoffs["block+challenge"]["human_rate"],
        "good_bot_blocked": int(((data["label"] == "good_bot") & (data["action"] == "block")).sum()),
        "cutoffs": cutoffs,
        "per_label": per_label,
        "per_kind": _per_kind(data, notes),
        "confusion_matrix": {"labels": list(LABELS), "actions": ACTIONS, "matrix": matrix},
        "pr_auc_bad_bot": pr_auc,
        "roc_auc_bad_bot": roc_auc,
        "notes": notes,
    }


def _per_label(data: pl.DataFrame) -> dict[str, dict[str, Any]]:
    # Predicted label: bad_bot if blocked; good_bot if a verified crawler; else human.
    blocked = (data["action"] == "block").to_numpy()
    verified = data["verified_crawler"].is_not_null().to_numpy()
    pred = np.where(blocked, "bad_bot", np.where(verified, "good_bot", "human"))
    out: dict[str, dict[str, Any]] = {}
    for label in LABELS:
        truth = (data["label"] == label).to_numpy()
        p = pred == label
        tp = int((truth & p).sum())
        precision = tp / p.sum() if p.sum() else 0.0
        recall = tp / truth.sum() if truth.sum() else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out[label] = {"precision": round(float(precision), 4), "recall": round(float(recall), 4),
                      "f1": round(float(f1), 4), "support": int(truth.sum())}
    return out


def _cutoff(data: pl.DataFrame, actions: tuple[str, ...]) -> dict[str, Any]:
    """Bad-bot precision/recall and human cost when ``actions`` count as flagging a client.
    Precision with nothing flagged is 0.0, as in ``bad_bot_precision``; ``flagged`` shows why."""
    flagged = data["action"].is_in(list(actions))
    bad = data["label"] == "bad_bot"
    human = data["label"] == "human"
    n_flagged, n_bad, n_human = int(flagged.sum()), int(bad.sum()), int(human.sum())
    tp, humans_flagged = int((flagged & bad).sum()), int((flagged & human).sum())
    return {
        "actions": list(actions),
        "flagged": n_flagged,
        "bad_bot_flagged": tp,
        "precision": round(tp / n_flagged, 4) if n_flagged else 0.0,
        "recall": round(tp / n_bad, 4) if n_bad else 0.0,
        "humans_flagged": humans_flagged,
        "human_rate": round(humans_flagged / n_human, 5) if n_human else 0.0,
    }


def _ranking(y_bad: np.ndarray, score: np.ndarray, notes: list[str]) -> tuple[float | None, float | None]:
    """PR-AUC and ROC-AUC of the score for bad_bot; both need bad and not-bad clients."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    n, n_bad = len(y_bad), int(y_bad.sum())
    if n == 0:
        notes.append("no labelled client appears in the logs: nothing to evaluate")
        return None, None
    if n_bad in (0, n):
        which = "all" if n_bad else "none"
        notes.append(f"{which} of the {n} labelled clients in the logs are bad_bot: "
                     "PR-AUC and ROC-AUC need both bad and not-bad clients and are not reported")
        return None, None
    return (round(float(average_precision_score(y_bad, score)), 4),
            round(float(roc_auc_score(y_bad, score)), 4))


def _per_kind(data: pl.DataFrame, notes: list[str]) -> dict[str, dict[str, Any]]:
    """``label/kind`` → clients, blocked, challenged; ``caught``/``recall`` are the older
    names for blocked and blocked/clients (for humans that share is a false-positive rate)."""
    if "kind" not in data.columns:
        notes.append("labels have no kind column: no per-kind breakdown")
        return {}
    per_kind: dict[str, dict[str, Any]] = {}
    for (label, kind), grp in data.group_by(["label", "kind"]):
        n = len(grp)
        blocked = int((grp["action"] == "block").sum())
        challenged = int((grp["action"] == "challenge").sum())
        per_kind[f"{label}/{kind}"] = {"label": label, "kind": kind, "clients": n, "blocked": blocked,
                                       "challenged": challenged, "caught": blocked,
                                       "recall": round(blocked / n, 4)}
    return dict(sorted(per_kind.items()))


def describe(metrics: dict[str, Any]) -> list[str]:
    """Plain sentences for the headline numbers, each set against what chance would give."""
    prev, n, n_bad = metrics["prevalence_bad_bot"], metrics["clients_evaluated"], metrics["bad_bots_evaluated"]
    lines = [f"{n} of {metrics['clients_labelled']} labelled clients found in the logs; "
             f"{n_bad} are bad bots" + (f" (share {prev:.2f})" if prev is not None else "")]
    pr, roc = metrics["pr_auc_bad_bot"], metrics["roc_auc_bad_bot"]
    if pr is None or roc is None:
        lines.append("PR-AUC and ROC-AUC: not reported, see the note")
    else:
        lines.append(f"PR-AUC {pr:.2f} (a random score would get {prev:.2f}, the bad-bot share)")
        lines.append(f"ROC-AUC {roc:.2f} (a random score would get 0.50)")
    for name, c in metrics["cutoffs"].items():
        lines.append(f"{name}: caught {c['bad_bot_flagged']} of {n_bad} bad bots (recall {c['recall']:.2f}); "
                     f"{c['flagged']} clients flagged (precision {c['precision']:.2f}); "
                     f"humans flagged {c['humans_flagged']} ({c['human_rate']:.2%})")
    return lines


def evaluate_logs(logs: list[str], labels_path: Path, cfg: Config, *, format: str | None = None, ranges: Any = None) -> dict[str, Any]:
    from botguard.model.training import read_labels
    from botguard.pipeline import compute_features, score_clients

    labels = read_labels(labels_path)
    feats = compute_features(logs, cfg, format=format, ranges=ranges)
    result = score_clients(feats.clients, cfg, product_regs=feats.product_regs, force=True)
    return evaluate_frame(result.decisions, labels)
