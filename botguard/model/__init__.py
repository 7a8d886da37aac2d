"""The classifier beside the rules: scikit-learn, trained on simulated labelled traffic.

``predict`` is what the pipeline calls; it returns None (with a warning) when no model can be
loaded, so ``analyze`` still runs on rules alone.
"""

from __future__ import annotations

import polars as pl

from botguard.config.models import Config


def predict(clients: pl.DataFrame, cfg: Config, warnings: list[str]) -> pl.DataFrame | None:
    from botguard.model.artifact import load_model, model_path

    path = model_path(cfg)
    if path is None or not path.exists():
        warnings.append(f"no model at {path}: scoring on rules only (run `make model` or `botguard train`)")
        return None
    # Only clients the model may speak for are scored (see model.min_requests): most clients
    # of a big log have a handful of requests, and scoring them would be wasted work.
    eligible = clients.filter(pl.col("requests") >= cfg.model.min_requests)
    if eligible.is_empty():
        return None
    model = load_model(path)
    from botguard.model.training import MIN_APP_CLIENTS

    training = model.meta.get("training", {}) if isinstance(model.meta, dict) else {}
    if int(training.get("app_clients", 0)) < MIN_APP_CLIENTS and "app_ua_share" in eligible.columns:
        # A mobile app's users are nothing like the traffic the model learnt from (the packaged
        # model knows browsers and bots): it would call them bots. Rules judge them alone.
        eligible = eligible.filter(pl.col("app_ua_share").fill_null(0.0) < 0.5)
        if eligible.is_empty():
            return None
    return model.score(eligible)
