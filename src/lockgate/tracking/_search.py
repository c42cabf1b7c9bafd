"""The run filter grammar, MLflow-flavoured.

    metrics.auc > 0.9 and params.max_depth = '6' and tags.team LIKE 'fraud%'
    attributes.status IN ('FINISHED', 'FAILED')

Clauses are joined by ``and``; fields are ``metrics.``, ``params.``, ``tags.`` or
``attributes.`` followed by a name (backquote names with odd characters: ``metrics.`val-auc```).
"""

from __future__ import annotations

import re
from typing import cast

from lockgate.errors import InvalidInputError
from lockgate.store.query import ATTRIBUTES, Clause, Field, FieldKind, Op, OrderBy

__all__ = ["parse_filter", "parse_order_by"]

_EXAMPLE = "example: metrics.auc > 0.9 and params.max_depth = '6'"
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
      | (?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?![\w.]))
      | (?P<op>==|!=|<>|<=|>=|<|>|=)
      | (?P<punct>[(),])
      | (?P<field>[A-Za-z_]+\.(?:`[^`]+`|[A-Za-z0-9_\-./:]+))
      | (?P<word>[A-Za-z_]+)
    )""",
    re.VERBOSE,
)
_KINDS: dict[str, FieldKind] = {
    "metric": "metric",
    "metrics": "metric",
    "param": "param",
    "params": "param",
    "parameter": "param",
    "parameters": "param",
    "tag": "tag",
    "tags": "tag",
    "attribute": "attribute",
    "attributes": "attribute",
    "attr": "attribute",
    "run": "attribute",
}


def _tokens(text: str) -> list[tuple[str, str, int]]:
    out: list[tuple[str, str, int]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise InvalidInputError(
                f"search filter: cannot read {text[pos:].strip()[:20]!r} at position {pos}; {_EXAMPLE}"
            )
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind), m.start(kind)))
        pos = m.end()
    return out


def _field(token: str) -> Field:
    prefix, _, name = token.partition(".")
    kind = _KINDS.get(prefix.lower())
    if kind is None:
        raise InvalidInputError(
            f"search filter: unknown field type '{prefix}'; use metrics., params., tags. or attributes."
        )
    name = name.strip("`")
    if kind == "attribute" and name not in ATTRIBUTES:
        known = ", ".join(sorted(ATTRIBUTES))
        raise InvalidInputError(f"search filter: unknown attribute '{name}'; known attributes: {known}")
    return Field(kind, name)


def _unquote(token: str) -> str:
    return re.sub(r"\\(.)", r"\1", token[1:-1])


def parse_filter(text: str | None) -> list[Clause]:
    """Parse a filter into clauses (all must hold)."""
    if not text or not text.strip():
        return []
    if "\x00" in text:
        # No stored key or value can hold one (PostgreSQL refuses NUL in text outright).
        raise InvalidInputError(f"search filter: contains a NUL character (\\x00); remove it; {_EXAMPLE}")
    toks = _tokens(text)
    clauses: list[Clause] = []
    i = 0

    def expect(kind: str, what: str) -> tuple[str, str, int]:
        nonlocal i
        if i >= len(toks) or toks[i][0] != kind:
            got = toks[i][1] if i < len(toks) else "the end"
            raise InvalidInputError(f"search filter: expected {what} but found {got!r}; {_EXAMPLE}")
        i += 1
        return toks[i - 1]

    while True:
        field = _field(expect("field", "a field such as metrics.auc")[1])
        op = _operator(toks, i)
        i += 2 if op == "NOT IN" else 1
        value: float | str | tuple[float | str, ...]
        if op in ("IN", "NOT IN"):
            expect("punct", "'('")
            items: list[float | str] = []
            while True:
                kind, tok, _ = toks[i] if i < len(toks) else ("", "", 0)
                if kind not in ("string", "number"):
                    raise InvalidInputError(f"search filter: expected a value in the list after {op}; {_EXAMPLE}")
                items.append(_unquote(tok) if kind == "string" else tok)
                i += 1
                sep = expect("punct", "',' or ')'")[1]
                if sep == ")":
                    break
            value = tuple(items)
        else:
            kind, tok, _ = toks[i] if i < len(toks) else ("", "", 0)
            if kind == "string":
                value = _unquote(tok)
            elif kind == "number":
                value = float(tok)
            else:
                raise InvalidInputError(
                    f"search filter: expected a value after {op} for {field.kind}s.{field.key}; {_EXAMPLE}"
                )
            i += 1
        clauses.append(_typed(Clause(field, op, value)))
        if i >= len(toks):
            return clauses
        kind, tok, _ = toks[i]
        if kind != "word" or tok.lower() != "and":
            hint = " (only 'and' is supported)" if tok.lower() == "or" else ""
            raise InvalidInputError(f"search filter: expected 'and' but found {tok!r}{hint}; {_EXAMPLE}")
        i += 1


def _operator(toks: list[tuple[str, str, int]], i: int) -> Op:
    if i >= len(toks):
        raise InvalidInputError(f"search filter: expected a comparison operator; {_EXAMPLE}")
    kind, tok, _ = toks[i]
    if kind == "op":
        return cast(Op, {"==": "=", "<>": "!="}.get(tok, tok))
    word = tok.upper()
    if kind == "word" and word in ("LIKE", "ILIKE", "IN"):
        return cast(Op, word)
    if kind == "word" and word == "NOT" and i + 1 < len(toks) and toks[i + 1][1].upper() == "IN":
        return "NOT IN"
    raise InvalidInputError(f"search filter: {tok!r} is not an operator; use =, !=, <, <=, >, >=, LIKE, ILIKE, IN")


def _typed(clause: Clause) -> Clause:
    kind = clause.field.kind
    numeric = kind == "metric" or (kind == "attribute" and clause.field.key in ("start_time", "end_time"))
    if numeric:
        if clause.op in ("LIKE", "ILIKE"):
            raise InvalidInputError(f"search filter: {clause.op} needs text, but {kind}s are numbers")
        if isinstance(clause.value, str):
            raise InvalidInputError(
                f"search filter: {kind}s.{clause.field.key} is a number; compare it with a number, not '{clause.value}'"
            )
        if isinstance(clause.value, tuple):
            try:
                return Clause(clause.field, clause.op, tuple(float(v) for v in clause.value))
            except ValueError:
                raise InvalidInputError(
                    f"search filter: the list for {kind}s.{clause.field.key} must hold numbers"
                ) from None
        return clause
    if isinstance(clause.value, float):
        text = repr(clause.value)
        return Clause(clause.field, clause.op, text[:-2] if text.endswith(".0") else text)
    if clause.op in ("LIKE", "ILIKE") and isinstance(clause.value, str):
        trailing = len(clause.value) - len(clause.value.rstrip("\\"))
        if trailing % 2:
            raise InvalidInputError(
                f"search filter: the {clause.op} pattern for {clause.field.kind}s.{clause.field.key} ends with a lone "
                "backslash, which escapes nothing; write two backslashes to match one"
            )
    return clause


def parse_order_by(items: list[str] | str | None) -> list[OrderBy]:
    """``["metrics.auc desc", "attributes.start_time"]`` into orderings."""
    if not items:
        return []
    if isinstance(items, str):
        items = [s for s in items.split(",") if s.strip()]
    out = []
    for item in items:
        parts = item.strip().split()
        if not parts or len(parts) > 2 or (len(parts) == 2 and parts[1].lower() not in ("asc", "desc")):
            raise InvalidInputError(f"order by {item!r} is not valid; example: 'metrics.auc desc'")
        field = _field(parts[0]) if "." in parts[0] else _field(f"attributes.{parts[0]}")
        out.append(OrderBy(field, descending=len(parts) == 2 and parts[1].lower() == "desc"))
    return out
