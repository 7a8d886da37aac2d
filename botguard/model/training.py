"""Training: labelled logs → features → a gradient-boosted classifier plus an IsolationForest.

Labels are keyed by the client key (an address, or a session id as in the Iliou data). Good
bots count as not-bad: their verification is the policy's job, and a model that learned
"crawling is bad" would fight it.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from botguard.config.models import Config
from botguard.errors import InputError

_LABEL_MAP = {
    "human": ("human", "human"),
    "good_bot": ("good_bot", "good_bot"),
    "bad_bot": ("bad_bot", "bad_bot"),
    "moderate_bot": ("bad_bot", "moderate"),
    "advanced_bot": ("bad_bot", "advanced"),
    "bot": ("bad_bot", "bot"),
}


def read_labels(path: Path) -> pl.DataFrame:
    """client, label (human|good_bot|bad_bot), kind. CSV with a header (first column = key,
    then label, optional kind) or whitespace-separated ``KEY LABEL`` lines (Iliou)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{path}: cannot read labels: {exc.strerror}") from None
    rows: list[tuple[str, str, str]] = []
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    if lines and "," in lines[0]:
        reader = csv.reader(lines)
        header = [h.strip().lower() for h in next(reader)]
        for i, rec in enumerate(reader, start=2):
            if len(rec) < 2:
                raise InputError(f"{path}:{i}: expected key,label[,kind], got {rec!r}")
            label = rec[1].strip()
            kind = rec[2].strip() if len(rec) > 2 and "kind" in header else ""
            rows.append((rec[0].strip(), label, kind))
    else:
        for i, ln in enumerate(lines, start=1):
            parts = re.split(r"\s+", ln.strip())
            if len(parts) < 2:
                raise InputError(f"{path}:{i}: expected 'KEY LABEL', got {ln!r}")
            rows.append((parts[0], parts[1], ""))
    out = []
    for key, label, kind in rows:
        norm = label.lower().replace(" ", "_")
        if norm not in _LABEL_MAP:
            raise InputError(f"{path}: unknown label {label!r} (known: {', '.join(_LABEL_MAP)})")
        lab, default_kind = _LABEL_MAP[norm]
        out.append((key, lab, kind or default_kind))
    return pl.DataFrame(out, schema={"client": pl.String, "label": pl.String, "kind": pl.String}, orient="row").unique("client", keep="last")


#: A model that saw fewer people using a mobile app than this does not score app clients
#: (see predict): it has only learnt what scrapers with app agents look like.
MIN_APP_CLIENTS = 20


def app_clients(data: pl.DataFrame) -> int:
    """Labelled clients other than bad bots that are mostly a mobile app's HTTP stack."""
    if "app_ua_share" not in data.columns:
        return 0
    return int(((data["app_ua_share"].fill_null(0.0) >= 0.5) & (data["label"] != "bad_bot")).sum())


def fit(clients: pl.DataFrame, labels: pl.DataFrame, *, seed: int = 0) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier, IsolationForest

    from botguard.model.artifact import BotModel, feature_matrix

    # Sorted: a join's row order is not fixed, and the isolation forest samples rows by position.
    data = clients.join(labels, on="client", how="inner").sort("client")
    if data.is_empty():
        raise InputError("no labelled client appears in the logs (check the client key: session.key)")
    X = feature_matrix(data)
    # A feature nobody has (no ranges or MaxMind databases loaded: every is_datacenter unknown)
    # makes scikit-learn's binning fail; a constant column teaches the model nothing, as it should.
    X[:, np.isnan(X).all(axis=0)] = 0.0
    y = (data["label"] == "bad_bot").to_numpy().astype(int)
    if len(set(y)) < 2:
        raise InputError("labels need both bad_bot and non-bad clients to train")
    # Balanced classes: bad bots are a minority of clients but the ones that matter.
    w = np.where(y == 1, 0.5 / y.mean(), 0.5 / (1 - y.mean()))
    clf = HistGradientBoostingClassifier(
        max_iter=300, learning_rate=0.06, max_leaf_nodes=15, min_samples_leaf=10,
        l2_regularization=1.0, random_state=seed,
    ).fit(X, y, sample_weight=w)
    normal = X[y == 0]
    iso = IsolationForest(n_estimators=200, contamination="auto", random_state=seed).fit(np.nan_to_num(normal, nan=-1.0))
    return BotModel(clf, iso, {}), data


def train_from_logs(logs: list[str], labels_path: Path, cfg: Config, *, out: Path, format: str | None = None,
                    seed: int = 0, ranges: Any = None) -> dict[str, Any]:
    from botguard.model.artifact import FEATURES, save_model, versions
    from botguard.pipeline import compute_features

    labels = read_labels(labels_path)
    feats = compute_features(logs, cfg, format=format, ranges=ranges)
    model, data = fit(feats.clients, labels, seed=seed)
    proba = model.score(data)["model_score"].to_numpy()
    y = (data["label"] == "bad_bot").to_numpy()
    metrics = _binary_metrics(y, proba)
    model.meta = {
        "features": FEATURES,
        "versions": versions(),
        "training": {"logs": [str(x) for x in logs], "labels": str(labels_path), "clients": len(data),
                     "bad_bot": int(y.sum()), "seed": seed, "app_clients": app_clients(data)},
        "metrics": {"train": metrics},
    }
    save_model(model, out)
    return dict(model.meta)


def _binary_metrics(y: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import average_precision_score, f1_score, precision_score, recall_score

    pred = proba >= 0.5
    return {
        "precision": round(float(precision_score(y, pred, zero_division=0)), 4),
        "recall": round(float(recall_score(y, pred, zero_division=0)), 4),
        "f1": round(float(f1_score(y, pred, zero_division=0)), 4),
        "pr_auc": round(float(average_precision_score(y, proba)), 4) if y.any() else 0.0,
    }
