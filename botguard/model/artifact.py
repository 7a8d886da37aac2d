"""The model artifact: a classifier and an anomaly detector with their metadata, saved with
``skops.io`` so that loading never executes code from the file.

A file is refused (clearly) when its feature list or scikit-learn version does not match this
botguard, or when it contains any type outside a short allow-list.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from botguard.config.models import Config
from botguard.errors import ModelError

#: Shape-agnostic client features the model sees (rates, shares, timing, agent, network).
#: Client features the model sees. Only shape-agnostic ones (rates, timing, assets, referers,
#: errors, agent, network): URL-pattern features (product, listing, API shares, catalogue
#: coverage) depend on one shop's URL layout and are left to the rules, so the model carries
#: over to sites whose URLs look nothing like the simulator's.
FEATURES: list[str] = [
    "req_per_min", "pages_per_min", "peak_pages_per_10s", "peak_pages_per_min", "gap_median_s",
    "gap_cv", "burstiness", "assets_per_page", "asset_share", "head_share", "post_share",
    "no_referer_page_share", "error_4xx_share", "error_404_share", "error_429_share",
    "night_share", "probe_share", "attack_share", "bad_request_share", "library_ua_share",
    "scanner_ua_share", "headless_ua_share", "browser_ua_share", "crawler_ua_share",
    "empty_ua_share", "malformed_ua_share", "stale_ua_share", "crawler_claim_share",
    "log_requests", "log_sessions", "log_distinct_agents", "agents_per_request",
    "log_clients_per_agent", "is_datacenter_num", "fake_crawler_num", "log_clients_in_prefix",
    "log_distinct_paths", "robots_share",
]

_TRUSTED_PREFIXES = ("sklearn.", "numpy.", "builtins.", "collections.", "scipy.")


def model_path(cfg: Config) -> Path:
    if cfg.model.path:
        return Path(cfg.model.path).expanduser()
    return Path(str(resources.files("botguard") / "data" / "model.npz"))


def feature_matrix(clients: pl.DataFrame) -> np.ndarray:
    """Client frame → the model's feature matrix (NaN where unknown; the trees handle it)."""
    def col(name: str) -> pl.Expr:
        return pl.col(name).cast(pl.Float64) if name in clients.columns else pl.lit(None, pl.Float64)

    derived = clients.select(
        *[col(f) for f in FEATURES if f in clients.columns and f not in ("is_datacenter_num", "fake_crawler_num")],
        (col("requests") + 1).log().alias("log_requests"),
        (col("sessions") + 1).log().alias("log_sessions"),
        (col("distinct_agents") + 1).log().alias("log_distinct_agents"),
        (col("distinct_agents") / col("requests")).alias("agents_per_request"),
        (col("clients_per_agent") + 1).log().alias("log_clients_per_agent"),
        col("is_datacenter").alias("is_datacenter_num"),
        col("fake_crawler").alias("fake_crawler_num"),
        (col("clients_in_prefix") + 1).log().alias("log_clients_in_prefix"),
        (col("distinct_paths") + 1).log().alias("log_distinct_paths"),
        (col("robots_hits") / col("requests")).alias("robots_share"),
    )
    missing = [f for f in FEATURES if f not in derived.columns]
    derived = derived.with_columns([pl.lit(None, pl.Float64).alias(m) for m in missing])
    return derived.select(FEATURES).to_numpy().astype(np.float64)


@dataclass
class BotModel:
    """Classifier + anomaly detector. ``classifier``/``anomaly`` are either scikit-learn
    estimators (training, .skops files) or one ``CompactModel`` holding both (.npz files)."""

    classifier: Any
    anomaly: Any
    meta: dict[str, Any]

    def _scores(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        Xa = np.nan_to_num(X, nan=-1.0)
        if self.classifier is self.anomaly:  # a CompactModel holds both
            return self.classifier.predict_proba(X), self.anomaly.decision_function(Xa)
        return self.classifier.predict_proba(X)[:, 1], self.anomaly.decision_function(Xa)

    def score(self, clients: pl.DataFrame) -> pl.DataFrame:
        proba, d = self._scores(feature_matrix(clients))
        # decision_function < 0 means outlier; squash to 0..1 with 0.5 at the boundary.
        anomaly = 1 / (1 + np.exp(np.clip(d * 20, -50, 50)))
        return pl.DataFrame({
            "client": clients["client"],
            "requests": clients["requests"],
            "model_score": np.round(proba, 4),
            "anomaly_score": np.round(anomaly, 4),
        })


def versions() -> dict[str, str]:
    import sklearn

    from botguard import __version__

    return {"botguard": __version__, "scikit-learn": sklearn.__version__, "numpy": np.__version__}


def save_model(model: BotModel, path: Path) -> None:
    """``.npz``: plain arrays, scored by numpy alone (what ships). ``.skops``: the fitted
    scikit-learn objects, for users who want to inspect or refit them."""
    from botguard.sinks.atomic import atomic_write

    if Path(path).suffix == ".npz":
        from botguard.model.compact import export_compact

        export_compact(model.classifier, model.anomaly, model.meta, Path(path))
        return
    import skops.io as sio

    blob = sio.dumps({"classifier": model.classifier, "anomaly": model.anomaly, "meta": model.meta})
    atomic_write(path, blob)


def load_model(path: Path) -> BotModel:
    """Load without executing code from the file: numpy arrays with pickling disabled, or skops
    with an allow-list of types. A model for other features or another scikit-learn is refused."""
    path = Path(path)
    if path.suffix == ".npz":
        from botguard.model.compact import CompactModel

        compact = CompactModel.load(path, features=FEATURES)
        return BotModel(compact, compact, compact.meta)
    return _load_skops(path)


def _load_skops(path: Path) -> BotModel:
    import sklearn
    import skops.io as sio

    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as exc:
        raise ModelError(f"{path}: not a readable skops model file ({exc})") from None
    bad = [t for t in untrusted if not t.startswith(_TRUSTED_PREFIXES)]
    if bad:
        raise ModelError(f"{path}: refusing to load types outside the allow-list: {', '.join(sorted(bad)[:5])}")
    try:
        obj = sio.load(path, trusted=untrusted)
    except Exception as exc:
        raise ModelError(f"{path}: cannot load model ({exc})") from None
    if not isinstance(obj, dict) or not {"classifier", "anomaly", "meta"} <= set(obj):
        raise ModelError(f"{path}: not a botguard model (missing classifier/anomaly/meta)")
    meta = obj["meta"]
    if meta.get("features") != FEATURES:
        raise ModelError(
            f"{path}: model features do not match this botguard ({len(meta.get('features') or [])} vs {len(FEATURES)})",
            hint="retrain with `make model` or `botguard train`",
        )
    trained = str(meta.get("versions", {}).get("scikit-learn", "?"))
    if trained.split(".")[:2] != sklearn.__version__.split(".")[:2]:
        raise ModelError(
            f"{path}: trained with scikit-learn {trained}, running {sklearn.__version__}",
            hint="retrain with `make model` or `botguard train` for this version",
        )
    return BotModel(obj["classifier"], obj["anomaly"], meta)


