"""YAML rules → Polars expressions over the client feature frame, with reasons.

A rule's ``when`` is a small expression language parsed with :mod:`ast` and translated node by
node (never ``eval``): column names, numbers, strings, true/false, comparisons, ``and`` /
``or`` / ``not``, ``+ - * /`` and ``x in ['a', 'b']``. A missing value never matches.
"""

from __future__ import annotations

import ast
import functools
import operator
import re
from dataclasses import dataclass
from typing import Any

import polars as pl

from botguard.config.loader import register_validator
from botguard.config.models import Config, RuleSpec
from botguard.scoring import EVIDENCE_SCHEMA


class RuleSyntaxError(ValueError):
    pass


_CMP = {
    ast.Gt: operator.gt, ast.GtE: operator.ge, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Eq: operator.eq, ast.NotEq: operator.ne,
}
_BIN = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def compile_when(text: str, columns: set[str] | None = None) -> pl.Expr:
    """Translate a rule condition to a boolean Polars expression (nulls → False)."""
    try:
        tree = ast.parse(text.replace("&&", " and ").replace("||", " or "), mode="eval")
    except SyntaxError as exc:
        raise RuleSyntaxError(f"cannot parse {text!r}: {exc.msg}") from None
    expr: pl.Expr = _node(tree.body, columns)
    return expr.cast(pl.Boolean).fill_null(False)


def _node(node: ast.AST, columns: set[str] | None) -> pl.Expr:
    if isinstance(node, ast.BoolOp):
        parts = [_node(v, columns).cast(pl.Boolean).fill_null(False) for v in node.values]
        return pl.all_horizontal(parts) if isinstance(node.op, ast.And) else pl.any_horizontal(parts)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return ~_node(node.operand, columns).cast(pl.Boolean).fill_null(False)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_node(node.operand, columns)
    if isinstance(node, ast.Compare):
        left = _node(node.left, columns)
        parts = []
        for op, comp in zip(node.ops, node.comparators, strict=True):
            if isinstance(op, ast.In | ast.NotIn):
                if not isinstance(comp, ast.List | ast.Tuple):
                    raise RuleSyntaxError("'in' needs a list like ['a', 'b']")
                values = [_literal(v) for v in comp.elts]
                e = left.is_in(values)
                parts.append(~e if isinstance(op, ast.NotIn) else e)
            elif type(op) in _CMP:
                right = _node(comp, columns)
                parts.append(_CMP[type(op)](left, right))
                left = right
            else:
                raise RuleSyntaxError(f"unsupported comparison {type(op).__name__}")
        return pl.all_horizontal(parts) if len(parts) > 1 else parts[0]
    if isinstance(node, ast.BinOp) and type(node.op) in _BIN:
        result: pl.Expr = _BIN[type(node.op)](_node(node.left, columns), _node(node.right, columns))
        return result
    if isinstance(node, ast.Name):
        if node.id in ("true", "True"):
            return pl.lit(True)
        if node.id in ("false", "False"):
            return pl.lit(False)
        if columns is not None and node.id not in columns:
            close = _close(node.id, columns)
            raise RuleSyntaxError(
                f"unknown feature {node.id!r}" + (f" (did you mean {', '.join(close)}?)" if close else "")
                + "; `botguard features --level client` lists the columns"
            )
        return pl.col(node.id)
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float | str | bool):
        return pl.lit(node.value)
    raise RuleSyntaxError(f"unsupported expression: {ast.unparse(node)!r}")


def _literal(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    raise RuleSyntaxError("list items must be literals")


def _close(name: str, columns: set[str]) -> list[str]:
    import difflib

    return difflib.get_close_matches(name, sorted(columns), n=3)


_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::([^}]*))?\}")
_TOKEN = re.compile(r"\[\[|\]\]|\[|\]|" + _FIELD.pattern)

#: Literal text, then the field after it (name and format spec), if any.
_Piece = tuple[str, str | None, str]
#: Segments of a template: (optional, pieces). An optional segment is shown only when every
#: field in it has a value worth showing (see ``_shown``).
Template = list[tuple[bool, list[_Piece]]]


class TemplateError(ValueError):
    pass


def _split_template(template: str) -> Template:
    """'{a:.0f} pages[ ({b})]' → [(False, [('', 'a', '.0f'), (' pages', None, '')]),
    (True, [(' (', 'b', ''), (')', None, '')])].

    The syntax a reason may use: ``{column}`` or ``{column:spec}`` (a Python format spec) for
    a value; ``{column:s}`` for a plural 's' (none when the value is 1); ``[...]`` for a part
    shown only when its values are there and not zero; ``[[`` and ``]]`` for literal brackets.
    """
    segments: Template = []
    pieces: list[_Piece] = []
    literal: list[str] = []
    optional = False
    last = 0

    def close(next_optional: bool) -> None:
        nonlocal pieces, optional
        pieces.append(("".join(literal), None, ""))
        literal.clear()
        segments.append((optional, pieces))
        pieces, optional = [], next_optional

    for m in _TOKEN.finditer(template):
        literal.append(template[last : m.start()])
        last = m.end()
        token = m.group(0)
        if token in ("[[", "]]"):
            literal.append(token[0])
        elif token == "[":
            if optional:
                raise TemplateError(f"'[' at position {m.start()} inside another [...]: optional parts do not nest")
            close(True)
        elif token == "]":
            if not optional:
                raise TemplateError(f"']' at position {m.start()} closes nothing (write ']]' for a literal bracket)")
            close(False)
        else:
            pieces.append(("".join(literal), m.group(1), m.group(2) or ""))
            literal.clear()
    literal.append(template[last:])
    if optional:
        raise TemplateError("'[' is never closed by ']' (write '[[' for a literal bracket)")
    close(False)
    return [(opt, ps) for opt, ps in segments if opt or any(text or name for text, name, _ in ps)]


def _format(value: Any, spec: str) -> str:
    if value is None:
        return "?"
    if spec == "s" and isinstance(value, int | float) and not isinstance(value, bool):
        return "" if value == 1 else "s"
    try:
        return format(value, spec)
    except (ValueError, TypeError):
        return str(value)


def _shown(value: Any) -> bool:
    """Worth showing in an optional part: not missing, not zero, not empty, not NaN."""
    if value is None or value is False or value == "":
        return False
    if isinstance(value, int | float):
        return value == value and value != 0
    return True


def _render(template: Template, values: dict[str, list[Any]], i: int) -> str:
    """Row ``i`` of ``values`` (column name → list of values) through ``template``."""
    out: list[str] = []
    for optional, pieces in template:
        if optional and not all(_shown(values[name][i]) if name in values else False
                                for _, name, _ in pieces if name is not None):
            continue
        for text, name, spec in pieces:
            out.append(text)
            if name is not None:
                out.append(_format(values[name][i] if name in values else None, spec))
    return "".join(out)


def render_reason(template: str, row: dict[str, Any]) -> str:
    """'{product_pages_per_min:.0f} product pages/min' with the client's values."""
    return _render(_split_template(template), {k: [v] for k, v in row.items()}, 0)


@dataclass(frozen=True)
class CompiledRule:
    spec: RuleSpec
    expr: pl.Expr


def compile_rules(cfg: Config, columns: set[str] | None = None) -> list[CompiledRule]:
    return [CompiledRule(r, compile_when(r.when, columns)) for r in cfg.rules if r.enabled]


def evaluate(clients: pl.DataFrame, cfg: Config) -> pl.DataFrame:
    """One row per (client, matched rule): client, rule, weight, kind, reason, group (the
    rule's group, else its id)."""
    rules = compile_rules(cfg, set(clients.columns))
    if not rules or clients.is_empty():
        return pl.DataFrame(schema=EVIDENCE_SCHEMA)
    # Rule by rule, the matching clients only (in rule order, then client order): unpivoting
    # a clients × rules frame first made a row for every pair, matched or not.
    lf = clients.lazy()
    long = pl.concat(pl.collect_all([
        lf.filter(r.expr).select("client", pl.lit(r.spec.id, pl.String).alias("rule"))
        for r in rules
    ]))
    if long.is_empty():
        return pl.DataFrame(schema=EVIDENCE_SCHEMA)
    by_id = {r.spec.id: r.spec for r in rules}
    # Reasons are formatted per matched (client, rule): per distinct client, not per hit. Each
    # template is split once; values are read from column lists, not from one dict per row.
    templates = {rule_id: _split_template(spec.reason) for rule_id, spec in by_id.items()}
    fields = {name for t in templates.values() for _, pieces in t for _, name, _ in pieces if name is not None}
    needed = sorted(fields & set(clients.columns))
    matched = clients.filter(pl.col("client").is_in(long["client"].unique().implode())).select("client", *needed)
    position = {c: i for i, c in enumerate(matched["client"].to_list())}
    values = {name: matched[name].to_list() for name in needed}
    reasons = [
        _render(templates[rule], values, position[client])
        for client, rule in zip(long["client"].to_list(), long["rule"].to_list(), strict=True)
    ]
    return long.select(
        "client",
        "rule",
        pl.col("rule").replace_strict({k: v.weight for k, v in by_id.items()}, return_dtype=pl.Float64).alias("weight"),
        pl.col("rule").replace_strict({k: v.kind for k, v in by_id.items()}, return_dtype=pl.String).alias("kind"),
        pl.Series("reason", reasons, dtype=pl.String),
        pl.col("rule").replace_strict({k: v.group or k for k, v in by_id.items()}, return_dtype=pl.String).alias("group"),
    )


@functools.cache
def _empty_clients() -> pl.DataFrame:
    """The client frame's schema, no rows: rule conditions are type-checked against it."""
    from botguard.schema import CLIENT_FEATURES_SCHEMA

    return pl.DataFrame(schema=CLIENT_FEATURES_SCHEMA)


@register_validator
def _validate(cfg: Config) -> list[tuple[tuple[Any, ...], str]]:
    from botguard.schema import CLIENT_FEATURE_COLUMNS

    problems: list[tuple[tuple[Any, ...], str]] = []
    seen: set[str] = set()
    for i, rule in enumerate(cfg.rules):
        if rule.id in seen:
            problems.append((("rules", i, "id"), f"duplicate rule id {rule.id!r}"))
        seen.add(rule.id)
        try:
            expr = compile_when(rule.when, CLIENT_FEATURE_COLUMNS)
        except RuleSyntaxError as exc:
            problems.append((("rules", i, "when"), str(exc)))
        else:
            # Types too: a number compared with a string ('0.5') is caught here, not mid-run.
            try:
                _empty_clients().select(expr)
            except pl.exceptions.PolarsError as exc:
                first = str(exc).strip().splitlines()[0]
                problems.append((("rules", i, "when"), f"{rule.when!r} does not type-check: {first}"))
        # Field by field, even in a template whose brackets are wrong: every error at once.
        for m in _FIELD.finditer(rule.reason):
            if m.group(1) not in CLIENT_FEATURE_COLUMNS:
                problems.append((("rules", i, "reason"), f"unknown feature {{{m.group(1)}}} in reason"))
        try:
            _split_template(rule.reason)
        except TemplateError as exc:
            problems.append((("rules", i, "reason"), f"{exc}; allowed: {{column}}, {{column:spec}}, [optional part], [[ and ]] for brackets"))
    return problems
