"""The compact model: plain numpy arrays and JSON, read without pickle and scored without
scikit-learn.

Loading the skops artifact means importing scikit-learn and rebuilding estimators (~3 s), too
slow for a cron run over five minutes of logs. :func:`export_compact` flattens the fitted trees
into a dozen arrays in an ``.npz`` (metadata is a JSON string in it); :class:`CompactModel` reads
them with ``allow_pickle=False``, checks that they describe a forest of binary trees, and
reproduces ``HistGradientBoostingClassifier.predict_proba(X)[:, 1]`` and
``IsolationForest.decision_function(X)`` with numpy alone, trees summed in scikit-learn's order.

Scoring is vectorised over rows; the Python loops run over trees, nodes or depth levels only:

- Boosting trees are small (botguard uses 15 leaves), so each tree is scored without walking
  it (QuickScorer, Lucchese et al. 2015): every split the row fails (goes right at) rules out
  the leaves of its left subtree, kept as a bitmask; the exit leaf is the leftmost one left.
  That is three contiguous array operations per split and no gather.
- Isolation trees are deeper (up to 8 levels and ~100 nodes each), so a block of rows walks
  all trees at once, one depth level per step, through breadth-first node tables in which a
  node's right child is its left child + 1 and a leaf points to itself. Blocks run on threads:
  numpy releases the GIL inside each operation.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from botguard.errors import ModelError

FORMAT = "botguard-compact"
FORMAT_VERSION = 1

#: Arrays of the file: name → (kind of dtype, group). Arrays of one group have one length.
_ARRAYS: dict[str, tuple[str, str]] = {
    "gb_tree_offsets": ("iu", "gb_trees"),
    "gb_feature": ("iu", "gb_nodes"),
    "gb_threshold": ("f", "gb_nodes"),
    "gb_missing_left": ("b", "gb_nodes"),
    "gb_left": ("iu", "gb_nodes"),
    "gb_right": ("iu", "gb_nodes"),
    "gb_is_leaf": ("b", "gb_nodes"),
    "gb_value": ("f", "gb_nodes"),
    "if_tree_offsets": ("iu", "if_trees"),
    "if_children_left": ("iu", "if_nodes"),
    "if_children_right": ("iu", "if_nodes"),
    "if_feature": ("iu", "if_nodes"),
    "if_threshold": ("f", "if_nodes"),
    "if_missing_left": ("b", "if_nodes"),
    "if_n_node_samples": ("iu", "if_nodes"),
}

#: Leaf bitmasks live in one unsigned integer per row and tree.
_MAX_LEAVES = 64

#: Isolation forest: rows × trees walked per numpy operation; rows handed to one thread.
_BLOCK_CELLS = 65536
_SPAN_BLOCKS = 8

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


# --- export ---------------------------------------------------------------------------------


def export_compact(classifier: Any, anomaly: Any, meta: dict[str, Any], path: Path) -> None:
    """Write a fitted binary ``HistGradientBoostingClassifier`` and an ``IsolationForest`` to
    ``path`` (an ``.npz``), atomically. ``meta`` must be JSON-serialisable.

    Raises ValueError for what the compact format cannot reproduce: multiclass or non-logistic
    classifiers, categorical features, trees of more than 64 leaves, non-finite isolation
    thresholds, or two models that disagree on the number of features.
    """
    from botguard.sinks.atomic import atomic_write

    arrays, header = _boosting_arrays(classifier)
    forest_arrays, forest_header = _forest_arrays(anomaly)
    if forest_header["n_features"] != header["n_features"]:
        raise ValueError(
            f"classifier has {header['n_features']} features, anomaly detector {forest_header['n_features']}"
        )
    arrays.update(forest_arrays)
    document = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "n_features": header["n_features"],
        "classifier": header["classifier"],
        "anomaly": forest_header["anomaly"],
        "meta": meta,
    }
    try:
        text = json.dumps(document, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"metadata is not plain JSON: {exc}") from None
    payload: dict[str, Any] = {"meta": np.array(text), **arrays}
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **payload)
    atomic_write(Path(path), buffer.getvalue())


def _boosting_arrays(clf: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    from sklearn._loss.link import LogitLink
    from sklearn.ensemble import HistGradientBoostingClassifier

    if not isinstance(clf, HistGradientBoostingClassifier):
        raise ValueError(f"classifier: expected a HistGradientBoostingClassifier, got {type(clf).__name__}")
    if not hasattr(clf, "_predictors"):
        raise ValueError("classifier: not fitted")
    if clf.n_trees_per_iteration_ != 1 or len(clf.classes_) != 2:
        raise ValueError(f"classifier: only binary classifiers are supported ({len(clf.classes_)} classes)")
    if not isinstance(clf._loss.link, LogitLink):
        raise ValueError(f"classifier: only the logistic link is supported, got {type(clf._loss.link).__name__}")
    categorical = getattr(clf, "is_categorical_", None)
    if clf._preprocessor is not None or (categorical is not None and np.any(categorical)):
        raise ValueError("classifier: categorical features are not supported by the compact format")
    nodes = [predictors[0].nodes for predictors in clf._predictors]
    if any(n["is_categorical"].any() for n in nodes):
        raise ValueError("classifier: categorical splits are not supported by the compact format")
    leaves = max(int(n["is_leaf"].sum()) for n in nodes)
    if leaves > _MAX_LEAVES:
        raise ValueError(f"classifier: trees of up to {_MAX_LEAVES} leaves are supported, found {leaves}")
    flat = np.concatenate(nodes)
    arrays: dict[str, np.ndarray] = {
        "gb_tree_offsets": _offsets([len(n) for n in nodes]),
        "gb_feature": flat["feature_idx"].astype(np.int32),
        "gb_threshold": flat["num_threshold"].astype(np.float64),
        "gb_missing_left": flat["missing_go_to_left"].astype(bool),
        "gb_left": flat["left"].astype(np.int32),
        "gb_right": flat["right"].astype(np.int32),
        "gb_is_leaf": flat["is_leaf"].astype(bool),
        "gb_value": flat["value"].astype(np.float64),
    }
    header: dict[str, Any] = {
        "n_features": int(clf.n_features_in_),
        "classifier": {
            "kind": "hist_gradient_boosting_binary",
            "link": "logit",
            "baseline": float(np.asarray(clf._baseline_prediction).reshape(-1)[0]),
            "classes": np.asarray(clf.classes_).tolist(),
        },
    }
    return arrays, header


def _forest_arrays(iso: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    from sklearn.ensemble import IsolationForest

    if not isinstance(iso, IsolationForest):
        raise ValueError(f"anomaly: expected an IsolationForest, got {type(iso).__name__}")
    if not hasattr(iso, "estimators_"):
        raise ValueError("anomaly: not fitted")
    n_features = int(iso.n_features_in_)
    # scikit-learn trains each tree on X[:, estimators_features_[k]] only when it subsamples
    # features; otherwise the trees index X directly. Store original column numbers either way.
    subsampled = iso._max_features != n_features
    trees = [est.tree_ for est in iso.estimators_]
    features = []
    for tree, columns in zip(trees, iso.estimators_features_, strict=True):
        feature = tree.feature.astype(np.int64)
        internal = tree.children_left != -1
        if subsampled:
            feature[internal] = np.asarray(columns)[feature[internal]]
        feature[~internal] = -2
        features.append(feature)
    thresholds = np.concatenate([t.threshold for t in trees])
    internal = np.concatenate([t.children_left for t in trees]) != -1
    if not np.isfinite(thresholds[internal]).all():
        raise ValueError("anomaly: non-finite split thresholds (was it trained on infinite values?)")
    arrays: dict[str, np.ndarray] = {
        "if_tree_offsets": _offsets([t.node_count for t in trees]),
        "if_children_left": np.concatenate([t.children_left for t in trees]).astype(np.int32),
        "if_children_right": np.concatenate([t.children_right for t in trees]).astype(np.int32),
        "if_feature": np.concatenate(features).astype(np.int32),
        "if_threshold": thresholds.astype(np.float64),
        "if_missing_left": np.concatenate([t.missing_go_to_left for t in trees]).astype(bool),
        "if_n_node_samples": np.concatenate([t.n_node_samples for t in trees]).astype(np.int64),
    }
    header: dict[str, Any] = {
        "n_features": n_features,
        "anomaly": {
            "kind": "isolation_forest",
            "max_samples": int(iso.max_samples_),
            "offset": float(iso.offset_),
        },
    }
    return arrays, header


def _offsets(sizes: list[int]) -> IntArray:
    return np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]).astype(np.int64)


# --- load -----------------------------------------------------------------------------------


def _read(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The JSON document and the arrays of a compact file; ModelError for anything unreadable."""
    # The file is opened here, not by np.load, which leaves it open when the archive is broken.
    try:
        with open(path, "rb") as fh:
            npz = np.load(fh, allow_pickle=False)
            if not isinstance(npz, np.lib.npyio.NpzFile):
                raise ModelError(f"{path}: not a compact botguard model (a single array, not an .npz archive)")
            with npz:
                missing = sorted(({"meta"} | set(_ARRAYS)) - set(npz.files))
                if missing:
                    raise ModelError(f"{path}: not a compact botguard model (missing {', '.join(missing)})")
                # Every array is read, so a pickled object anywhere in the file is refused.
                arrays = {name: npz[name] for name in npz.files}
    except ModelError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc):
            raise ModelError(f"{path}: refusing a model file that contains pickled objects") from None
        raise ModelError(f"{path}: not a readable model file ({exc})") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise ModelError(f"{path}: not a readable model file ({exc})") from None
    text = arrays.pop("meta")
    if text.shape != () or text.dtype.kind != "U":
        raise ModelError(f"{path}: metadata must be a JSON string, got a {text.dtype} array of shape {text.shape}")
    try:
        document = json.loads(str(text))
    except ValueError as exc:
        raise ModelError(f"{path}: metadata is not valid JSON ({exc})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ModelError(f"{path}: not a compact botguard model (format is not {FORMAT!r})")
    if document.get("format_version") != FORMAT_VERSION:
        raise ModelError(
            f"{path}: compact format version {document.get('format_version')!r}, this botguard reads {FORMAT_VERSION}",
            hint="re-export the model with this botguard",
        )
    return document, arrays


def _check_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    lengths: dict[str, tuple[str, int]] = {}
    for name, (kinds, group) in _ARRAYS.items():
        array = arrays[name]
        if array.ndim != 1 or array.dtype.kind not in kinds:
            raise ModelError(f"{path}: array {name} must be 1-D of kind {kinds!r}, got {array.dtype} {array.shape}")
        if group in lengths and lengths[group][1] != len(array):
            other, size = lengths[group]
            raise ModelError(f"{path}: arrays {other} and {name} differ in length ({size} vs {len(array)})")
        lengths.setdefault(group, (name, len(array)))
    for prefix, nodes in (("gb", "gb_feature"), ("if", "if_feature")):
        offsets = arrays[f"{prefix}_tree_offsets"]
        if (len(offsets) < 2 or offsets[0] != 0 or offsets[-1] != len(arrays[nodes])
                or (np.diff(offsets.astype(np.int64)) < 1).any()):
            raise ModelError(f"{path}: {prefix}_tree_offsets do not split the {len(arrays[nodes])} nodes into trees")


def _number(path: Path, section: dict[str, Any], key: str, kind: type = float) -> Any:
    value = section.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
        raise ModelError(f"{path}: metadata {key} must be a finite number, got {value!r}")
    if kind is int and (not isinstance(value, int) or value < 1):
        raise ModelError(f"{path}: metadata {key} must be a positive integer, got {value!r}")
    return kind(value)


def _section(path: Path, document: dict[str, Any], key: str, kind: str) -> dict[str, Any]:
    section = document.get(key)
    if not isinstance(section, dict) or section.get("kind") != kind:
        raise ModelError(f"{path}: metadata {key} must describe a {kind}")
    return section


def _tree_ids(offsets: np.ndarray) -> IntArray:
    bounds = offsets.astype(np.int64)
    sizes = bounds[1:] - bounds[:-1]
    return np.repeat(np.arange(len(offsets) - 1, dtype=np.int64), sizes)


def _levels(path: Path, what: str, offsets: np.ndarray, left: np.ndarray, right: np.ndarray,
            is_leaf: npt.NDArray[np.bool_]) -> tuple[list[IntArray], IntArray, IntArray]:
    """Breadth-first levels of node numbers over all trees (roots first), and the children as
    numbers into the flat arrays. Refuses children outside their tree, a node with two parents
    and nodes no root reaches, so the walk ends and every node is visited exactly once."""
    offsets = offsets.astype(np.int64)
    tree = _tree_ids(offsets)
    size = np.diff(offsets)[tree]
    inner = ~is_leaf
    left_local, right_local = left.astype(np.int64), right.astype(np.int64)
    for local in (left_local, right_local):
        if ((local[inner] < 1) | (local[inner] >= size[inner])).any():
            raise ModelError(f"{path}: {what}: a child index points outside its tree")
    base = offsets[tree]
    left_global, right_global = left_local + base, right_local + base
    children = np.concatenate([left_global[inner], right_global[inner]])
    if len(np.unique(children)) != len(children):
        raise ModelError(f"{path}: {what}: a node has two parents")
    levels = [offsets[:-1]]
    visited = len(offsets) - 1
    while True:
        parents = levels[-1][inner[levels[-1]]]
        if not len(parents):
            break
        level = np.stack([left_global[parents], right_global[parents]], axis=1).reshape(-1)
        levels.append(level)
        visited += len(level)
    if visited != len(is_leaf):
        raise ModelError(f"{path}: {what}: {len(is_leaf) - visited} nodes are not reachable from a root")
    return levels, left_global, right_global


@dataclass(frozen=True)
class _Boosting:
    """Per tree: its splits as (feature, threshold, NaN goes right, left-subtree leaf mask) and
    its leaf values in left-to-right order, shifted by one (index = leaf rank + 1)."""

    baseline: float
    trees: list[tuple[list[tuple[int, float, bool, Any]], FloatArray]]
    mask_dtype: np.dtype[Any]


def _boosting(path: Path, document: dict[str, Any], arrays: dict[str, np.ndarray], n_features: int) -> _Boosting:
    section = _section(path, document, "classifier", "hist_gradient_boosting_binary")
    if section.get("link") != "logit":
        raise ModelError(f"{path}: classifier link must be 'logit', got {section.get('link')!r}")
    baseline = _number(path, section, "baseline")
    offsets = arrays["gb_tree_offsets"]
    is_leaf = arrays["gb_is_leaf"]
    feature = arrays["gb_feature"].astype(np.int64)
    threshold = arrays["gb_threshold"].astype(np.float64)
    value = arrays["gb_value"].astype(np.float64)
    inner = ~is_leaf
    if ((feature[inner] < 0) | (feature[inner] >= n_features)).any():
        raise ModelError(f"{path}: classifier: a split uses a feature outside 0..{n_features - 1}")
    if np.isnan(threshold[inner]).any() or not np.isfinite(value[is_leaf]).all():
        raise ModelError(f"{path}: classifier: NaN thresholds or non-finite leaf values")
    levels, left, right = _levels(path, "classifier", offsets, arrays["gb_left"], arrays["gb_right"], is_leaf)

    # Leaves under each node (bottom-up), then the rank of each subtree's leftmost leaf (top-down).
    n_leaves = is_leaf.astype(np.int64)
    for level in reversed(levels):
        parents = level[inner[level]]
        n_leaves[parents] = n_leaves[left[parents]] + n_leaves[right[parents]]
    roots = levels[0]
    if n_leaves[roots].max() > _MAX_LEAVES:
        raise ModelError(f"{path}: classifier: trees of up to {_MAX_LEAVES} leaves are supported")
    first = np.zeros(len(is_leaf), dtype=np.int64)
    for level in levels:
        parents = level[inner[level]]
        first[left[parents]] = first[parents]
        first[right[parents]] = first[parents] + n_leaves[left[parents]]

    mask_dtype = np.dtype(next(f"uint{b}" for b in (8, 16, 32, 64) if b >= n_leaves[roots].max()))
    scalar = mask_dtype.type
    tree_of = _tree_ids(offsets).tolist()
    splits: list[list[tuple[int, float, bool, Any]]] = [[] for _ in roots]
    for node, f, t, nan_left, width, start in zip(
        np.flatnonzero(inner).tolist(), feature[inner].tolist(), threshold[inner].tolist(),
        arrays["gb_missing_left"][inner].tolist(), n_leaves[left[inner]].tolist(), first[inner].tolist(),
        strict=True,
    ):
        splits[tree_of[node]].append((f, t, not nan_left, scalar(((1 << width) - 1) << start)))
    values = np.zeros((len(roots), int(n_leaves[roots].max()) + 1))
    leaves = np.flatnonzero(is_leaf)
    values[_tree_ids(offsets)[leaves], first[leaves] + 1] = value[leaves]
    trees = [(s, values[k, : n_leaves[roots[k]] + 1].copy()) for k, s in enumerate(splits)]
    return _Boosting(baseline, trees, mask_dtype)


@dataclass(frozen=True)
class _Forest:
    """Isolation trees, breadth first: node n tests ``column[n]`` (a column of the NaN-doubled
    float32 block: +n_features when NaN goes right) against ``threshold[n]``, then goes to
    ``child[n] + (x > threshold[n])``. A leaf has threshold +inf and itself as child, and
    ``path_length[leaf]`` is its depth plus the average path length of its training samples
    minus one, exactly as scikit-learn adds it up. Trees' roots are nodes 0..n_trees-1."""

    column: IntArray
    threshold: npt.NDArray[np.float32]
    child: IntArray
    path_length: FloatArray
    n_trees: int
    depth: int
    denominator: float
    offset: float
    #: ``child << column_bits | column``: one lookup instead of two per level.
    step: IntArray
    column_bits: int
    column_mask: int


def _average_path_length(n: FloatArray) -> FloatArray:
    """scikit-learn's ``_average_path_length``: of an unsuccessful search in a BST of n nodes."""
    out = np.zeros(n.shape)
    out[n == 2] = 1.0
    big = n > 2
    out[big] = 2.0 * (np.log(n[big] - 1.0) + np.euler_gamma) - 2.0 * (n[big] - 1.0) / n[big]
    return out


def _float32_below(threshold: FloatArray) -> npt.NDArray[np.float32]:
    """The largest float32 ≤ each threshold: for a float32 x, ``x <= t`` iff ``x <= this``,
    which is the comparison scikit-learn's trees make on float32 input."""
    with np.errstate(over="ignore"):
        t32 = threshold.astype(np.float32)
    above = t32.astype(np.float64) > threshold
    t32[above] = np.nextafter(t32[above], np.float32(-np.inf))
    return t32


def _forest(path: Path, document: dict[str, Any], arrays: dict[str, np.ndarray], n_features: int) -> _Forest:
    section = _section(path, document, "anomaly", "isolation_forest")
    max_samples = _number(path, section, "max_samples", int)
    offset = _number(path, section, "offset")
    left, right = arrays["if_children_left"], arrays["if_children_right"]
    is_leaf = left == -1
    if ((right == -1) != is_leaf).any():
        raise ModelError(f"{path}: anomaly: a node has only one child")
    feature = arrays["if_feature"].astype(np.int64)
    threshold = arrays["if_threshold"].astype(np.float64)
    samples = arrays["if_n_node_samples"].astype(np.float64)
    inner = ~is_leaf
    if ((feature[inner] < 0) | (feature[inner] >= n_features)).any():
        raise ModelError(f"{path}: anomaly: a split uses a feature outside 0..{n_features - 1}")
    if not np.isfinite(threshold[inner]).all() or (samples < 1).any():
        raise ModelError(f"{path}: anomaly: non-finite thresholds or empty nodes")
    levels, left_global, _ = _levels(path, "anomaly", arrays["if_tree_offsets"], left, right, is_leaf)

    order = np.concatenate(levels)
    renumber = np.empty(len(order), dtype=np.int64)
    renumber[order] = np.arange(len(order), dtype=np.int64)
    depth = np.empty(len(order), dtype=np.float64)
    for number, level in enumerate(levels, start=1):
        depth[level] = number  # scikit-learn counts the root as depth 1
    leaf = is_leaf[order]
    column = np.where(leaf, 0, feature[order] + n_features * ~arrays["if_missing_left"][order])
    child = np.where(leaf, np.arange(len(order)), renumber[np.where(leaf, 0, left_global[order])])
    t32 = np.where(leaf, np.float32(np.inf), _float32_below(threshold[order])).astype(np.float32)
    path_length = np.where(leaf, (depth + _average_path_length(samples))[order] - 1.0, 0.0)
    n_trees = len(levels[0])
    denominator = n_trees * float(_average_path_length(np.array([float(max_samples)]))[0])
    column_bits = (2 * n_features - 1).bit_length()
    step = (child.astype(np.int64) << column_bits) | column
    return _Forest(column.astype(np.int64), t32, child.astype(np.int64), path_length, n_trees,
                   len(levels) - 1, denominator, offset, step, column_bits, (1 << column_bits) - 1)


# --- scoring --------------------------------------------------------------------------------


def _matrix(X: Any, n_features: int) -> FloatArray:
    matrix: FloatArray = np.asarray(X, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[1] != n_features:
        raise ValueError(f"X must have shape (n_rows, {n_features}), got {matrix.shape}")
    return matrix


def _raw_boosting(model: _Boosting, X: FloatArray) -> FloatArray:
    raw = np.full(len(X), model.baseline)
    if not len(X):
        return raw
    columns = np.ascontiguousarray(X.T)
    has_nan = np.count_nonzero(np.isnan(columns), axis=1) > 0
    n = len(X)
    right = np.empty(n, dtype=bool)
    ruled_out = np.empty(n, dtype=model.mask_dtype)
    scratch = np.empty(n, dtype=model.mask_dtype)
    rank = np.empty(n, dtype=np.uint8)
    value = np.empty(n)
    one = model.mask_dtype.type(1)
    for splits, values in model.trees:
        ruled_out.fill(0)
        for feature, threshold, nan_right, mask in splits:
            if nan_right and has_nan[feature]:
                np.less_equal(columns[feature], threshold, out=right)
                np.logical_not(right, out=right)
            else:
                np.greater(columns[feature], threshold, out=right)
            np.multiply(right, mask, out=scratch)
            np.bitwise_or(ruled_out, scratch, out=ruled_out)
        # Rank of the lowest leaf not ruled out, plus one: the number of trailing ones + 1.
        np.add(ruled_out, one, out=scratch)
        np.bitwise_xor(scratch, ruled_out, out=scratch)
        np.bitwise_count(scratch, out=rank)
        np.take(values, rank, out=value, mode="clip")
        raw += value
    return raw


def _path_lengths(forest: _Forest, block: npt.NDArray[np.float32], out: FloatArray) -> None:
    """Sum over trees of each row's path length, for one block of rows (float32, NaN-doubled)."""
    rows, width = block.shape
    flat = block.reshape(-1)
    row_start = (np.arange(rows, dtype=np.int64) * width)[None, :]
    shape = (forest.n_trees, rows)
    node = np.empty(shape, dtype=np.int64)
    step = np.empty(shape, dtype=np.int64)
    index = np.empty(shape, dtype=np.int64)
    x = np.empty(shape, dtype=np.float32)
    threshold = np.empty(shape, dtype=np.float32)
    right = np.empty(shape, dtype=bool)
    # Every row starts at the roots, so the first level needs no lookup by node.
    roots = np.arange(forest.n_trees)
    np.add(forest.column[roots][:, None], row_start, out=index)
    np.take(flat, index, out=x, mode="clip")
    np.greater(x, forest.threshold[roots][:, None], out=right)
    np.add(forest.child[roots][:, None], right, out=node)
    for _ in range(forest.depth - 1):
        np.take(forest.step, node, out=step, mode="clip")
        np.bitwise_and(step, forest.column_mask, out=index)
        np.add(index, row_start, out=index)
        np.take(flat, index, out=x, mode="clip")
        np.take(forest.threshold, node, out=threshold, mode="clip")
        np.greater(x, threshold, out=right)
        np.right_shift(step, forest.column_bits, out=step)
        np.add(step, right, out=node)
    lengths = np.take(forest.path_length, node, mode="clip")
    # Tree after tree, the order scikit-learn adds them in; numpy sums down axis 0 that way,
    # except for a lone column, which it sums pairwise.
    if rows == 1:
        out[:] = np.cumsum(lengths[:, 0])[-1:]
    else:
        np.sum(lengths, axis=0, out=out)


def _decision(forest: _Forest, X: FloatArray, n_threads: int | None) -> FloatArray:
    n_features = X.shape[1]
    with np.errstate(over="ignore"):
        X32 = X.astype(np.float32)
    nan = np.isnan(X32)
    doubled = np.empty((len(X), 2 * n_features), dtype=np.float32)
    doubled[:, :n_features] = np.where(nan, np.float32(-np.inf), X32)
    doubled[:, n_features:] = np.where(nan, np.float32(np.inf), X32)
    depths = np.zeros(len(X))
    block = max(16, _BLOCK_CELLS // forest.n_trees)
    span = block * _SPAN_BLOCKS

    def run(start: int) -> None:
        for lo in range(start, min(start + span, len(X)), block):
            hi = min(lo + block, len(X))
            _path_lengths(forest, doubled[lo:hi], depths[lo:hi])

    starts = range(0, len(X), span)
    workers = min(len(starts), n_threads or _cpu_count())
    if workers > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(run, starts))
    else:
        for start in starts:
            run(start)
    # With a zero denominator (max_samples=1) scikit-learn takes the ratio, not the score, as 1.
    ratio = depths / forest.denominator if forest.denominator else np.ones(len(X))
    return -np.power(2.0, -ratio) - forest.offset


def _cpu_count() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class CompactModel:
    """A compact model read from disk: ``predict_proba`` and ``decision_function`` reproduce the
    exported scikit-learn estimators; ``meta`` is the metadata given to :func:`export_compact`."""

    def __init__(self, boosting: _Boosting, forest: _Forest, n_features: int, meta: dict[str, Any],
                 classes: list[Any]) -> None:
        self._boosting = boosting
        self._forest = forest
        self.n_features = n_features
        self.meta = meta
        self.classes = classes

    @classmethod
    def load(cls, path: Path, *, features: list[str] | None = None) -> CompactModel:
        """Read ``path``; with ``features``, also refuse a model trained on another feature list."""
        path = Path(path)
        document, arrays = _read(path)
        _check_arrays(path, arrays)
        n_features = document.get("n_features")
        if isinstance(n_features, bool) or not isinstance(n_features, int) or n_features < 1:
            raise ModelError(f"{path}: metadata n_features must be a positive integer, got {n_features!r}")
        meta = document.get("meta")
        if not isinstance(meta, dict):
            raise ModelError(f"{path}: metadata meta must be an object")
        if features is not None and meta.get("features") != features:
            raise ModelError(
                f"{path}: model features do not match this botguard ({len(meta.get('features') or [])} vs {len(features)})",
                hint="retrain with `make model` or `botguard train`",
            )
        boosting = _boosting(path, document, arrays, n_features)
        forest = _forest(path, document, arrays, n_features)
        classes = document["classifier"].get("classes")
        if not isinstance(classes, list) or len(classes) != 2:
            raise ModelError(f"{path}: metadata classifier.classes must list two classes")
        return cls(boosting, forest, n_features, meta, classes)

    def predict_proba(self, X: Any) -> FloatArray:
        """Probability of ``classes[1]`` for each row; NaN is a missing value, as in training."""
        raw = _raw_boosting(self._boosting, _matrix(X, self.n_features))
        # scipy's expit, 1 / (1 + exp(-x)); exp overflowing to inf gives the right limit, 0.
        with np.errstate(over="ignore"):
            return 1.0 / (1.0 + np.exp(-raw))

    def decision_function(self, X: Any, *, n_threads: int | None = None) -> FloatArray:
        """IsolationForest's ``decision_function``: negative for outliers. Rows are compared in
        float32, as scikit-learn does; NaN follows each split's ``missing_go_to_left``."""
        X = _matrix(X, self.n_features)
        if not len(X):
            return np.zeros(0)
        return _decision(self._forest, X, n_threads)
