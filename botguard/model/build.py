"""`make model`: retrain the packaged default model from simulated traffic, reproducibly.

Training seeds and evaluation seed are fixed and distinct; ranges written by the simulator
are loaded so crawler verification features match what ``analyze`` sees.

Each simulated log is learned twice: as written, and with its static assets removed, as an
origin server's log looks when a CDN serves them. People without assets in the log are
common; a model that learned "no assets = bot" from a simulator blocks them everywhere.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

if TYPE_CHECKING:
    from botguard.config import Config
    from botguard.features import FeatureResult
    from botguard.ranges import RangeSet

TRAIN_SEEDS = (101, 102, 103)
EVAL_SEED = 7777
HOURS = 12.0
CLIENTS = 700


def build(out: Path) -> dict[str, object]:
    from botguard.config import load_config
    from botguard.model.artifact import FEATURES, save_model, versions
    from botguard.model.evaluation import evaluate_frame
    from botguard.model.training import app_clients, fit, read_labels
    from botguard.pipeline import compute_features, score_clients
    from botguard.ranges import load_ranges, update_ranges
    from botguard.simulate import simulate

    cfg = load_config()
    clients, labels = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in (*TRAIN_SEEDS, EVAL_SEED):
            sim = simulate(Path(tmp) / f"s{seed}", seed=seed, hours=HOURS, clients=CLIENTS)
            data_dir = Path(tmp) / f"r{seed}"
            update_ranges(cfg, from_dir=sim.ranges_dir, data_dir=data_dir)
            ranges = load_ranges(cfg, data_dir)
            feats = compute_features([str(sim.log_path)], cfg, ranges=ranges)
            cdn = _without_assets(sim.log_path, cfg, ranges)
            lab = read_labels(sim.labels_path)
            if seed == EVAL_SEED:
                eval_feats, eval_labels, eval_cdn = feats, lab, cdn
                continue
            # Keys are addresses; keep seeds (and views) apart in case two share one.
            for view, f in (("", feats), ("cdn", cdn)):
                tag = pl.format("{}#{}{}", pl.col("client"), pl.lit(seed), pl.lit(view))
                clients.append(f.clients.with_columns(tag.alias("client")))
                labels.append(lab.with_columns(tag.alias("client")))
        all_clients = pl.concat(clients, how="diagonal_relaxed")
        all_labels = pl.concat(labels)
        model, data = fit(all_clients, all_labels, seed=0)
        model.meta = {
            "features": FEATURES,
            "versions": versions(),
            "training": {"source": "botguard simulate", "seeds": list(TRAIN_SEEDS), "hours": HOURS,
                         "clients_per_seed": CLIENTS, "clients": len(data),
                         "bad_bot": int((data["label"] == "bad_bot").sum()),
                         "app_clients": app_clients(data)},
        }
        save_model(model, out)
        # Held-out evaluation of the whole pipeline with the new model.
        cfg_eval = cfg.model_copy(update={"model": cfg.model.model_copy(update={"path": str(out)})})
        keys = ("bad_bot_precision", "bad_bot_recall", "human_block_rate", "good_bot_blocked", "pr_auc_bad_bot")
        model.meta["metrics"] = {"held_out_seed": EVAL_SEED}
        for view, f in (("", eval_feats), ("cdn_", eval_cdn)):
            result = score_clients(f.clients, cfg_eval, product_regs=f.product_regs, force=True)
            metrics = evaluate_frame(result.decisions, eval_labels)
            model.meta["metrics"].update({view + k: metrics[k] for k in keys})
        save_model(model, out)
    return dict(model.meta)


def _without_assets(log: Path, cfg: Config, ranges: RangeSet) -> FeatureResult:
    """Features of ``log`` with its static-asset requests dropped (a CDN served them)."""
    from botguard.features import build_features
    from botguard.features.hitflags import flag_hits
    from botguard.ingest import Ingest

    batches = (flag_hits(b, cfg).filter(~pl.col("is_asset")).collect() for b in Ingest([str(log)], cfg).batches())
    return build_features(batches, cfg, ranges=ranges)


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "data" / "model.npz"
    meta = build(out)
    print(json.dumps(meta, indent=2, default=str))


if __name__ == "__main__":
    main()
