"""YAML → typed Config, with errors that name the file, the line and the key path.

The packaged ``default.yaml`` is loaded first; a user's file overrides it key by key (mappings
merge recursively, lists replace, except ``rules``, which merge by ``id`` so an analyst can tune
one rule without restating the others).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from botguard.config.models import Config
from botguard.errors import ConfigError

KeyPath = tuple[str | int, ...]


def default_config_path() -> Path:
    return Path(str(resources.files("botguard") / "data" / "default.yaml"))


@dataclass
class _Located:
    """A plain YAML document plus where each key path came from."""

    data: Any
    origin: dict[KeyPath, tuple[str, int]] = field(default_factory=dict)


def _read_yaml(path: Path) -> _Located:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{path}: config file not found"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read config file: {exc.strerror}"]) from None
    try:
        # libyaml when available: ten times faster, and every run (cron too) pays for it.
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        node = yaml.compose(text, Loader=loader)
        data = yaml.load(text, Loader=loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{where}: invalid YAML: {problem}"]) from None
    located = _Located(data if data is not None else {})
    if node is not None:
        _index(node, (), str(path), located.origin)
    if not isinstance(located.data, dict):
        raise ConfigError([f"{path}:1: expected a mapping of sections at the top level"])
    return located


def _index(node: yaml.Node, path: KeyPath, file: str, out: dict[KeyPath, tuple[str, int]]) -> None:
    out[path] = (file, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            out[(*path, key)] = (file, key_node.start_mark.line + 1)
            _index(value_node, (*path, key), file, out)
            out[(*path, key)] = (file, key_node.start_mark.line + 1)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index(item, (*path, i), file, out)


def _merge(base: _Located, over: _Located) -> _Located:
    origin = dict(base.origin)

    def merge(b: Any, o: Any, path: KeyPath, opath: KeyPath) -> Any:
        if isinstance(b, dict) and isinstance(o, dict):
            out = dict(b)
            for k, v in o.items():
                out[k] = merge(b.get(k), v, (*path, k), (*opath, k)) if k in b else _take(v, (*path, k), (*opath, k))
                origin[(*path, k)] = over.origin.get((*opath, k), origin.get((*path, k), ("?", 0)))
            return out
        if path == ("rules",) and isinstance(b, list) and isinstance(o, list):
            return merge_rules(b, o, opath)
        return _take(o, path, opath)

    def _take(v: Any, path: KeyPath, opath: KeyPath) -> Any:
        # Every key under an overridden value now comes from the user's file.
        for k in [k for k in origin if k[: len(path)] == path]:
            del origin[k]
        for k, loc in over.origin.items():
            if k[: len(opath)] == opath:
                origin[(*path, *k[len(opath):])] = loc
        return v

    def merge_rules(b: list[Any], o: list[Any], opath: KeyPath) -> list[Any]:
        by_id = {r.get("id"): i for i, r in enumerate(b) if isinstance(r, dict)}
        out = list(b)
        for j, rule in enumerate(o):
            rid = rule.get("id") if isinstance(rule, dict) else None
            if rid in by_id:
                i = by_id[rid]
                out[i] = merge(b[i], rule, ("rules", i), (*opath, j))
            else:
                out.append(_take(rule, ("rules", len(out)), (*opath, j)))
        return out

    return _Located(merge(base.data, over.data, (), ()), origin)


def _format_loc(loc: tuple[Any, ...], data: Any = None) -> str:
    """``catalogue.product_patterns[0]``; a rule by its id (``rules[burst_rate].weight``): its
    index is in the merged list, not in the user's file."""
    rules = data.get("rules") if isinstance(data, dict) else None
    text = ""
    for k, part in enumerate(loc):
        if isinstance(part, int):
            rule = rules[part] if k == 1 and loc[0] == "rules" and isinstance(rules, list) and part < len(rules) else None
            text += f"[{rule['id']}]" if isinstance(rule, dict) and isinstance(rule.get("id"), str) else f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
    return text


def _locate(origin: dict[KeyPath, tuple[str, int]], loc: tuple[Any, ...]) -> str:
    path = tuple(loc)
    while path:
        if path in origin:
            file, line = origin[path]
            return f"{file}:{line}"
        path = path[:-1]
    file, line = origin.get((), ("config", 1))
    return f"{file}:{line}"


def _clean_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    # pydantic inserts validator names for tagged/annotated types; keep only real keys.
    return tuple(p for p in loc if not (isinstance(p, str) and ("[" in p or p.startswith("function-"))))


def _describe(err: Any) -> str:
    kind = err["type"]
    msg = str(err["msg"])
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    if kind == "literal_error":
        return f"{msg.replace('Input should be', 'expected')}, got {err.get('input')!r}"
    msg = msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if kind in ("float_parsing", "int_parsing", "float_type", "int_type", "bool_parsing", "bool_type"):
        noun = {"float": "a number", "int": "an integer", "bool": "true or false"}[kind.split("_")[0]]
        return f"expected {noun}, got {err.get('input')!r}"
    if not msg.startswith("expected") and "input" in err and kind not in ("value_error",):
        return f"{msg}, got {err.get('input')!r}"
    return msg


def _known_keys(model: Any, loc: tuple[Any, ...]) -> list[str] | None:
    """Allowed keys at the parent of an unknown key, for the error message."""
    from pydantic import BaseModel

    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return None
        ann = fields[part].annotation
        args = getattr(ann, "__args__", ())
        candidates = [ann, *args]
        nxt = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if nxt is None:
            nxt = next(
                (a for c in args for a in getattr(c, "__args__", ()) if isinstance(a, type) and issubclass(a, BaseModel)),
                None,
            )
        if nxt is None:
            return None
        current = nxt
    fields = getattr(current, "model_fields", None)
    return sorted(fields) if fields else None


Validator = Callable[[Config], list[tuple[tuple[Any, ...], str]]]
_extra_validators: list[Validator] = []


def register_validator(fn: Validator) -> Validator:
    """Later stages (rules) check their own expressions; problems come back with a key path."""
    _extra_validators.append(fn)
    return fn


def _proxy_sources(data: Any) -> list[tuple[tuple[Any, ...], str]]:
    """A trusted proxy named by its range source must name one that exists: a typo would
    quietly trust nobody, and every visitor would look like the proxy. Read off the merged
    YAML, so that it is reported alongside the model's own errors."""
    from botguard.config.types import SOURCE_NAME

    def get(*keys: str) -> Any:
        node = data
        for key in keys:
            node = node.get(key) if isinstance(node, dict) else None
        return node

    proxies, sources = get("ingest", "trusted_proxies"), get("ranges", "sources")
    if not isinstance(proxies, list) or not isinstance(sources, list):
        return []
    names = [s["name"] for s in sources if isinstance(s, dict) and isinstance(s.get("name"), str)]
    return [
        (("ingest", "trusted_proxies", k),
         f"expected an IP address, a CIDR or one of the range sources ({', '.join(names)}), got {p!r}")
        for k, p in enumerate(proxies)
        if isinstance(p, str) and SOURCE_NAME.fullmatch(p.strip()) and p.strip() not in names
    ]


def load_config(path: str | Path | None = None) -> Config:
    """Defaults merged with ``path``. Raises ConfigError listing every problem, located."""
    located = _read_yaml(default_config_path())
    if path is not None:
        located = _merge(located, _read_yaml(Path(path)))
    problems = [f"{_locate(located.origin, loc)}: {_format_loc(loc, located.data)}: {text}"
                for loc, text in _proxy_sources(located.data)]
    try:
        cfg = Config.model_validate(located.data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = _clean_loc(tuple(err["loc"]))
            text = _describe(err)
            if err["type"] == "extra_forbidden":
                known = _known_keys(Config, loc)
                if known:
                    text += f" (allowed: {', '.join(known)})"
            problems.append(f"{_locate(located.origin, loc)}: {_format_loc(loc, located.data)}: {text}")
        raise ConfigError(problems) from None
    import botguard.rules  # noqa: F401  (registers the rule-expression validator)

    for validate in _extra_validators:
        for loc, text in validate(cfg):
            problems.append(f"{_locate(located.origin, loc)}: {_format_loc(loc, located.data)}: {text}")
    if problems:
        raise ConfigError(problems)
    return cfg


def config_hash(cfg: Config) -> str:
    """Short stable digest of the effective config, written into blocklist headers."""
    blob = json.dumps(cfg.model_dump(mode="json"), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
