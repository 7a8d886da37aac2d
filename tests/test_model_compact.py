"""Compact model: the numpy predictor reproduces scikit-learn, and malformed files are refused."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from botguard.errors import ModelError
from botguard.model.compact import CompactModel, export_compact

REPO = Path(__file__).resolve().parents[1]
PACKAGED = REPO / "botguard" / "data" / "model.npz"
N_FEATURES = 6
TOLERANCE = 1e-9


def _features(rng: np.random.Generator, n: int, nan_share: float = 0.15) -> np.ndarray:
    X = rng.normal(size=(n, N_FEATURES))
    X[:, 4] = rng.integers(0, 4, size=n)  # few distinct values: thresholds land on data
    X[rng.random((n, N_FEATURES)) < nan_share] = np.nan
    return X


def _labels(X: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    signal = np.nan_to_num(X[:, 0]) + np.nan_to_num(X[:, 1]) * np.nan_to_num(X[:, 2]) + rng.normal(size=len(X)) * 0.3
    # Missing feature 3 means bad: the trees learn missing-versus-present splits.
    return np.asarray((signal > 0.3) | np.isnan(X[:, 3]), dtype=int)


def _fit(max_features: float = 1.0, **boosting: Any) -> tuple[Any, Any]:
    from sklearn.ensemble import HistGradientBoostingClassifier, IsolationForest

    rng = np.random.default_rng(0)
    X = _features(rng, 3000)
    y = _labels(X, rng)
    params = {"max_iter": 40, "learning_rate": 0.1, "max_leaf_nodes": 15, "min_samples_leaf": 10,
              "l2_regularization": 1.0, "random_state": 0, **boosting}
    clf = HistGradientBoostingClassifier(**params).fit(X, y)
    iso = IsolationForest(n_estimators=30, max_features=max_features, random_state=0).fit(np.nan_to_num(X, nan=-1.0))
    return clf, iso


@pytest.fixture(scope="module")
def models() -> tuple[Any, Any]:
    return _fit()


@pytest.fixture(scope="module")
def compact(models: tuple[Any, Any], tmp_path_factory: pytest.TempPathFactory) -> CompactModel:
    path = tmp_path_factory.mktemp("compact") / "model.npz"
    export_compact(*models, {"features": [f"f{i}" for i in range(N_FEATURES)], "note": "test"}, path)
    return CompactModel.load(path)


def _probe(models: tuple[Any, Any], n: int = 4000) -> np.ndarray:
    """New rows: NaN, values far outside training, infinities, and values exactly on split
    thresholds (where ``<=`` against ``<`` and float32 rounding would show)."""
    clf, iso = models
    rng = np.random.default_rng(1)
    X: np.ndarray = _features(rng, n, nan_share=0.2) * rng.choice([1.0, 1.0, 50.0], size=(n, 1))
    X[rng.random(X.shape) < 0.01] = np.inf
    X[rng.random(X.shape) < 0.01] = -np.inf
    cut = n // 4
    gb = np.concatenate([p[0].nodes for p in clf._predictors])
    gb = gb[~gb["is_leaf"].astype(bool)]
    if len(gb):
        pick = rng.integers(0, len(gb), size=(cut, 3))
        X[np.arange(cut)[:, None], gb["feature_idx"][pick]] = gb["num_threshold"][pick]
    tree = iso.estimators_[0].tree_
    inner = tree.children_left != -1
    if inner.any():
        pick = rng.integers(0, inner.sum(), size=(cut, 3))
        thresholds = tree.threshold[inner][pick]
        rows = np.arange(cut, 2 * cut)[:, None]
        X[rows, tree.feature[inner][pick]] = np.where(rng.random(pick.shape) < 0.5, thresholds,
                                                      thresholds.astype(np.float32).astype(np.float64))
    return X


def test_predict_proba_matches_sklearn(models: tuple[Any, Any], compact: CompactModel) -> None:
    clf, _ = models
    X = _probe(models)
    assert np.isnan(X).any() and np.isinf(X).any()
    np.testing.assert_allclose(compact.predict_proba(X), clf.predict_proba(X)[:, 1], rtol=0, atol=TOLERANCE)


def test_model_has_missing_value_splits(models: tuple[Any, Any]) -> None:
    """The comparison above covers both NaN directions and the missing-vs-present split."""
    clf, _ = models
    nodes = np.concatenate([p[0].nodes for p in clf._predictors])
    inner = nodes[~nodes["is_leaf"].astype(bool)]
    assert set(inner["missing_go_to_left"].tolist()) == {0, 1}
    assert np.isinf(inner["num_threshold"]).any()


def test_decision_function_matches_sklearn(models: tuple[Any, Any], compact: CompactModel) -> None:
    _, iso = models
    Xa = np.nan_to_num(_probe(models), nan=-1.0, posinf=1e6, neginf=-1e6)
    np.testing.assert_allclose(compact.decision_function(Xa), iso.decision_function(Xa), rtol=0, atol=TOLERANCE)


def test_decision_function_with_nan_and_infinity_follows_sklearn(models: tuple[Any, Any], compact: CompactModel) -> None:
    _, iso = models
    X = _probe(models)
    np.testing.assert_allclose(compact.decision_function(X), iso.decision_function(X), rtol=0, atol=TOLERANCE)


def test_feature_subsampling_forest(tmp_path: Path) -> None:
    clf, iso = _fit(max_features=0.5)
    path = tmp_path / "m.npz"
    export_compact(clf, iso, {}, path)
    X = np.nan_to_num(_probe((clf, iso)), nan=-1.0, posinf=1e6, neginf=-1e6)
    np.testing.assert_allclose(CompactModel.load(path).decision_function(X), iso.decision_function(X), rtol=0, atol=TOLERANCE)


SHAPES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "single-leaf trees, one-sample forest": ({"max_iter": 5, "min_samples_leaf": 2000}, {"max_samples": 1}),
    "64-leaf trees, contamination offset": ({"max_iter": 15, "max_leaf_nodes": 64, "min_samples_leaf": 5},
                                            {"contamination": 0.1, "max_samples": 20}),
    "early stopping, bootstrap": ({"max_iter": 30, "max_leaf_nodes": 40, "early_stopping": True}, {"bootstrap": True}),
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_other_model_shapes(tmp_path: Path, shape: str) -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier, IsolationForest

    boosting, forest = SHAPES[shape]
    rng = np.random.default_rng(3)
    X = _features(rng, 3000)
    clf = HistGradientBoostingClassifier(random_state=0, **boosting).fit(X, _labels(X, rng))
    iso = IsolationForest(n_estimators=15, random_state=0, **forest).fit(np.nan_to_num(X, nan=-1.0))
    export_compact(clf, iso, {}, tmp_path / "m.npz")
    compact = CompactModel.load(tmp_path / "m.npz")
    X = _probe((clf, iso))
    np.testing.assert_allclose(compact.predict_proba(X), clf.predict_proba(X)[:, 1], rtol=0, atol=TOLERANCE)
    Xa = np.nan_to_num(X, nan=-1.0, posinf=1e6, neginf=-1e6)
    np.testing.assert_allclose(compact.decision_function(Xa), iso.decision_function(Xa), rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("n_threads", [1, 2, 3])
def test_scores_do_not_depend_on_batching_or_threads(compact: CompactModel, models: tuple[Any, Any],
                                                     monkeypatch: pytest.MonkeyPatch, n_threads: int) -> None:
    import botguard.model.compact as module

    X = _probe(models, n=1000)
    whole = compact.decision_function(X, n_threads=1)
    # Blocks of 30 trees × 40 rows, spans of 120 rows: many spans, a ragged last block.
    monkeypatch.setattr(module, "_BLOCK_CELLS", 30 * 40)
    monkeypatch.setattr(module, "_SPAN_BLOCKS", 3)
    np.testing.assert_array_equal(compact.decision_function(X, n_threads=n_threads), whole)
    parts = [compact.decision_function(X[i:i + 97], n_threads=n_threads) for i in range(0, len(X), 97)]
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    rows = [compact.decision_function(X[i:i + 1], n_threads=n_threads) for i in range(50)]
    np.testing.assert_array_equal(np.concatenate(rows), whole[:50])
    np.testing.assert_array_equal(compact.predict_proba(X[:5]), compact.predict_proba(X)[:5])


def test_empty_input_and_wrong_width(compact: CompactModel) -> None:
    assert compact.predict_proba(np.zeros((0, N_FEATURES))).shape == (0,)
    assert compact.decision_function(np.zeros((0, N_FEATURES))).shape == (0,)
    with pytest.raises(ValueError, match=r"shape \(n_rows, 6\)"):
        compact.predict_proba(np.zeros((3, N_FEATURES + 1)))
    with pytest.raises(ValueError, match="shape"):
        compact.decision_function(np.zeros(N_FEATURES))


def test_meta_and_classes_round_trip(compact: CompactModel) -> None:
    assert compact.meta == {"features": [f"f{i}" for i in range(N_FEATURES)], "note": "test"}
    assert compact.classes == [0, 1]
    assert compact.n_features == N_FEATURES


def test_packaged_model(tmp_path: Path) -> None:
    """The shipped .npz loads without scikit-learn, matches the feature list and carries its
    training metadata; re-exporting a model trained the same way reproduces sklearn exactly."""
    from botguard.model.artifact import FEATURES, load_model

    model = load_model(PACKAGED)
    assert model.meta["features"] == FEATURES
    assert model.meta["training"]["source"] == "botguard simulate"
    assert model.meta["metrics"]["bad_bot_precision"] >= 0.98
    rng = np.random.default_rng(7)
    X = rng.lognormal(size=(3000, len(FEATURES))) * rng.choice([0.01, 1.0, 100.0], size=(3000, len(FEATURES)))
    X[rng.random(X.shape) < 0.3] = np.nan
    p = model.classifier.predict_proba(X)
    assert p.shape == (3000,) and np.all((p >= 0) & (p <= 1))


def test_export_writes_plain_arrays_atomically(models: tuple[Any, Any], tmp_path: Path) -> None:
    path = tmp_path / "m.npz"
    export_compact(*models, {"a": [1, 2]}, path)
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]
    with np.load(path, allow_pickle=False) as npz:
        assert all(npz[name].dtype != object for name in npz.files)
        assert json.loads(str(npz["meta"]))["meta"] == {"a": [1, 2]}


def test_export_refuses_what_it_cannot_reproduce(models: tuple[Any, Any], tmp_path: Path) -> None:
    from sklearn.ensemble import (
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
        IsolationForest,
    )

    clf, iso = models
    rng = np.random.default_rng(2)
    X = rng.normal(size=(300, N_FEATURES))
    multi = HistGradientBoostingClassifier(max_iter=3).fit(X, rng.integers(0, 3, 300))
    with pytest.raises(ValueError, match="binary"):
        export_compact(multi, iso, {}, tmp_path / "m.npz")
    Xc = X.copy()
    Xc[:, 0] = rng.integers(0, 5, 300)
    categorical = HistGradientBoostingClassifier(max_iter=3, categorical_features=[0]).fit(Xc, rng.integers(0, 2, 300))
    with pytest.raises(ValueError, match="categorical"):
        export_compact(categorical, iso, {}, tmp_path / "m.npz")
    with pytest.raises(ValueError, match="HistGradientBoostingClassifier"):
        export_compact(HistGradientBoostingRegressor(max_iter=3).fit(X, X[:, 0]), iso, {}, tmp_path / "m.npz")
    wide = HistGradientBoostingClassifier(max_iter=2, max_leaf_nodes=80, min_samples_leaf=2).fit(X, rng.integers(0, 2, 300))
    with pytest.raises(ValueError, match="up to 64 leaves"):
        export_compact(wide, iso, {}, tmp_path / "m.npz")
    narrow = IsolationForest(n_estimators=3, random_state=0).fit(X[:, :3])
    with pytest.raises(ValueError, match="features"):
        export_compact(clf, narrow, {}, tmp_path / "m.npz")
    with pytest.raises(ValueError, match="JSON"):
        export_compact(clf, iso, {"when": object()}, tmp_path / "m.npz")
    assert not (tmp_path / "m.npz").exists()


# --- refusals -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def arrays(models: tuple[Any, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    path = tmp_path_factory.mktemp("arrays") / "m.npz"
    export_compact(*models, {}, path)
    with np.load(path, allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}


def _write(path: Path, arrays: dict[str, np.ndarray], allow_pickle: bool = False) -> Path:
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=allow_pickle, **arrays)
    path.write_bytes(buffer.getvalue())
    return path


def test_valid_rewrite_loads(arrays: dict[str, np.ndarray], tmp_path: Path) -> None:
    CompactModel.load(_write(tmp_path / "m.npz", arrays))


def test_refuses_pickled_object_array(arrays: dict[str, np.ndarray], tmp_path: Path) -> None:
    path = _write(tmp_path / "m.npz", {**arrays, "extra": np.array([{"x": 1}], dtype=object)}, allow_pickle=True)
    with pytest.raises(ModelError, match="pickled"):
        CompactModel.load(path)


def test_refuses_plain_pickle_and_npy(tmp_path: Path) -> None:
    import pickle

    (tmp_path / "p.npz").write_bytes(pickle.dumps({"meta": 1}))
    with pytest.raises(ModelError, match="pickle"):
        CompactModel.load(tmp_path / "p.npz")
    np.save(tmp_path / "a.npy", np.zeros(3))
    with pytest.raises(ModelError, match=r"not an \.npz"):
        CompactModel.load(tmp_path / "a.npy")


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 0.999])
def test_refuses_truncated_file(models: tuple[Any, Any], tmp_path: Path, keep: float) -> None:
    path = tmp_path / "m.npz"
    export_compact(*models, {}, path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ModelError, match="not a readable model file"):
        CompactModel.load(path)


def test_refuses_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not a readable model file"):
        CompactModel.load(tmp_path / "absent.npz")


def _meta(arrays: dict[str, np.ndarray], **changes: Any) -> dict[str, np.ndarray]:
    document = json.loads(str(arrays["meta"]))
    for dotted, value in changes.items():
        *parents, key = dotted.split("__")
        node = document
        for parent in parents:
            node = node[parent]
        node[key] = value
    return {**arrays, "meta": np.array(json.dumps(document))}


def _swap(arrays: dict[str, np.ndarray], name: str, fn: Any) -> dict[str, np.ndarray]:
    return {**arrays, name: fn(arrays[name].copy())}


def _set(index: int, value: Any) -> Any:
    def change(a: np.ndarray) -> np.ndarray:
        a[index] = value
        return a
    return change


MALFORMED = {
    "missing array": (lambda a: {k: v for k, v in a.items() if k != "if_threshold"}, "missing if_threshold"),
    "missing meta": (lambda a: {k: v for k, v in a.items() if k != "meta"}, "missing meta"),
    "short array": (lambda a: _swap(a, "gb_value", lambda v: v[:-1]), "differ in length"),
    "2-D array": (lambda a: _swap(a, "gb_value", lambda v: v.reshape(1, -1)), "must be 1-D"),
    "float children": (lambda a: _swap(a, "gb_left", lambda v: v.astype(float)), "gb_left must be 1-D of kind"),
    "string array": (lambda a: _swap(a, "if_feature", lambda v: v.astype(str)), "if_feature"),
    "offsets beyond nodes": (lambda a: _swap(a, "gb_tree_offsets", _set(-1, 10**9)), "do not split"),
    "empty tree": (lambda a: _swap(a, "if_tree_offsets", _set(1, 0)), "do not split"),
    "child outside tree": (lambda a: _swap(a, "gb_left", _set(0, 10**6)), "outside its tree"),
    "child is root": (lambda a: _swap(a, "if_children_left", _set(0, 0)), "outside its tree"),
    "two parents": (lambda a: _swap(a, "gb_right", _set(0, int(a["gb_left"][0]))), "two parents"),
    "one child": (lambda a: _swap(a, "if_children_right", _set(0, -1)), "only one child"),
    "feature out of range": (lambda a: _swap(a, "if_feature", _set(0, 99)), "feature outside"),
    "NaN threshold": (lambda a: _swap(a, "gb_threshold", _set(0, np.nan)), "NaN thresholds"),
    "infinite leaf value": (lambda a: _swap(a, "gb_value", lambda v: np.where(a["gb_is_leaf"], np.inf, v)), "leaf values"),
    "meta not a string": (lambda a: {**a, "meta": np.zeros(3)}, "JSON string"),
    "meta not JSON": (lambda a: {**a, "meta": np.array("{nope")}, "not valid JSON"),
    "other format": (lambda a: _meta(a, format="something"), "format"),
    "newer version": (lambda a: _meta(a, format_version=99), "version 99"),
    "bad n_features": (lambda a: _meta(a, n_features="six"), "n_features"),
    "bad baseline": (lambda a: _meta(a, classifier__baseline="0.1"), "baseline"),
    "other link": (lambda a: _meta(a, classifier__link="log"), "link"),
    "bad max_samples": (lambda a: _meta(a, anomaly__max_samples=0), "max_samples"),
    "no anomaly": (lambda a: _meta(a, anomaly=None), "anomaly"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_refuses_malformed(arrays: dict[str, np.ndarray], tmp_path: Path, case: str) -> None:
    change, message = MALFORMED[case]
    path = _write(tmp_path / "m.npz", change(arrays))
    with pytest.raises(ModelError, match=message):
        CompactModel.load(path)


def test_refuses_unreachable_nodes(arrays: dict[str, np.ndarray], tmp_path: Path) -> None:
    """Every node keeps at most one parent, but two of them only reach each other."""
    left, right, leaf = (arrays[n].copy() for n in ("gb_left", "gb_right", "gb_is_leaf"))
    end = int(arrays["gb_tree_offsets"][1])
    parent = next(p for p in range(end) if not leaf[p] and leaf[left[p]] and leaf[right[p]])
    a, b = int(left[parent]), int(right[parent])
    leaf[parent], leaf[a] = True, False
    left[a], right[a] = b, a
    path = _write(tmp_path / "m.npz", {**arrays, "gb_left": left, "gb_right": right, "gb_is_leaf": leaf})
    with pytest.raises(ModelError, match="2 nodes are not reachable"):
        CompactModel.load(path)


def test_refuses_other_feature_list(models: tuple[Any, Any], tmp_path: Path) -> None:
    path = tmp_path / "m.npz"
    export_compact(*models, {"features": ["a", "b"]}, path)
    with pytest.raises(ModelError, match="features do not match") as info:
        CompactModel.load(path, features=["a", "b", "c"])
    assert info.value.hint and "retrain" in info.value.hint


def test_compact_scoring_never_imports_sklearn(models: tuple[Any, Any], tmp_path: Path) -> None:
    path = tmp_path / "m.npz"
    export_compact(*models, {}, path)
    script = textwrap.dedent(f"""
        import sys
        import numpy as np
        from botguard.model.compact import CompactModel
        m = CompactModel.load({str(path)!r})
        X = np.random.default_rng(0).normal(size=(500, {N_FEATURES}))
        X[::7, 3] = np.nan
        m.predict_proba(X)
        m.decision_function(np.nan_to_num(X, nan=-1.0))
        heavy = sorted(name for name in sys.modules if name.split(".")[0] in ("sklearn", "skops", "scipy"))
        print(heavy)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_training_does_not_depend_on_row_order(tmp_path: Path) -> None:
    """``make model`` is reproducible: the same clients in another order give the same model
    (the isolation forest samples rows by position)."""
    from botguard.config import load_config
    from botguard.features import build_features
    from botguard.ingest import read_hits
    from botguard.model.training import fit, read_labels
    from botguard.simulate import simulate

    sim = simulate(tmp_path / "sim", seed=5, hours=2, clients=200)
    cfg = load_config()
    hits, _ = read_hits([str(sim.log_path)], cfg)
    clients = build_features([hits], cfg).clients
    labels = read_labels(sim.labels_path)
    a, _ = fit(clients, labels)
    b, _ = fit(clients.reverse(), labels.reverse())
    X = np.random.default_rng(3).random((50, a.classifier.n_features_in_))
    assert (a.anomaly.decision_function(X) == b.anomaly.decision_function(X)).all()
    assert (a.classifier.predict_proba(X) == b.classifier.predict_proba(X)).all()
