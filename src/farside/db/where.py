"""xapi's expression language for ``get_all_records_where`` (ocaml/database/db_filter*.ml).

    expr  := value "=" value | expr "and" expr | expr "or" expr | "not" expr
           | "true" | "false" | "(" expr ")"
    value := '"' chars '"'  (a literal)  |  "field" '"' name '"'  (a field of the row)

``and`` and ``or`` share one precedence and associate to the left; ``not`` has the lowest
precedence (``%right LNOT`` is declared first), so it negates everything after it up to the
closing parenthesis: ``not a = b or c = d`` is ``not (a = b or c = d)``. Keywords are matched
as prefixes, as xapi's lexer does (``trueand`` is ``true and``).

Values compare as the strings xapi's database stores: refs, enums and numbers as their text,
bools ``true``/``false``, sets ``('a' 'b')``, maps ``(('k' 'v'))``. A field is named by its
database column (``name__label``) or by its field name (``name_label``). Bad expressions and
unknown fields are ``INVALID_VALUE [expr, reason]``, xapi's error for an expression it cannot
parse.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from farside.db.transaction import Transaction
from farside.errors import InvalidValue
from farside.model.schema import ClassDef
from farside.model.types import BoolType, FloatType, MapType, SetType

# The reasons xapi gives (Printexc of the OCaml exception).
PARSE_ERROR = "Stdlib.Parsing.Parse_error"
LEX_ERROR = 'Failure("lexing: empty token")'
_KEYWORDS = ("true", "false", "field", "and", "or", "not")
# Deeper nesting than any real client writes; keeps a hostile expression from exhausting the stack.
MAX_DEPTH = 200


@dataclass(frozen=True)
class Value:
    field: bool  # True: a field's name; False: a literal
    text: str


@dataclass(frozen=True)
class Expr:
    op: str  # "true", "false", "not", "eq", "and", "or"
    args: tuple[Any, ...] = ()


Row = Callable[[str], str]


def _tokens(text: str, expr: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c in " \t\n":
            i += 1
        elif c in "=()":
            out.append((c, ""))
            i += 1
        elif c == '"':
            end = text.find('"', i + 1)
            if end < 0:
                raise InvalidValue(expr, LEX_ERROR)
            out.append(("ident", text[i + 1 : end]))
            i = end + 1
        else:
            word = next((k for k in _KEYWORDS if text.startswith(k, i)), None)
            if word is None:
                raise InvalidValue(expr, LEX_ERROR)
            out.append((word, ""))
            i += len(word)
    return out


def parse(text: str) -> Expr:
    """The expression ``text``; INVALID_VALUE [text, reason] when it is not one."""
    return _Parser(_tokens(text, text), text).whole()


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]], text: str) -> None:
        self.tokens = tokens
        self.text = text
        self.at = 0
        self.depth = 0

    def peek(self) -> str:
        return self.tokens[self.at][0] if self.at < len(self.tokens) else "eof"

    def take(self, kind: str) -> str:
        if self.peek() != kind:
            raise InvalidValue(self.text, PARSE_ERROR)
        value = self.tokens[self.at][1]
        self.at += 1
        return value

    def whole(self) -> Expr:
        expr = self.binary()
        if self.peek() != "eof":
            raise InvalidValue(self.text, PARSE_ERROR)
        return expr

    def binary(self) -> Expr:
        left = self.unary()
        while (kind := self.peek()) in ("and", "or"):
            self.take(kind)
            left = Expr(kind, (left, self.unary()))
        return left

    def unary(self) -> Expr:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise InvalidValue(self.text, f"nested deeper than {MAX_DEPTH} levels")
        try:
            kind = self.peek()
            if kind == "not":
                # xapi's grammar gives "not" the lowest precedence: it negates all that follows.
                self.take("not")
                return Expr("not", (self.binary(),))
            if kind in ("true", "false"):
                self.take(kind)
                return Expr(kind)
            if kind == "(":
                self.take("(")
                inner = self.binary()
                self.take(")")
                return inner
            left = self.value()
            self.take("=")
            return Expr("eq", (left, self.value()))
        finally:
            self.depth -= 1

    def value(self) -> Value:
        if self.peek() == "field":
            self.take("field")
            return Value(True, self.take("ident"))
        return Value(False, self.take("ident"))


def evaluate(expr: Expr, row: Row) -> bool:
    """Whether the row (a field's stored text by name) satisfies ``expr``."""
    op = expr.op
    if op in ("and", "or"):
        # A chain "a and b or c ..." is as deep as it is long: walked in a loop, not recursively.
        rights = []
        node = expr
        while node.op in ("and", "or"):
            rights.append((node.op, node.args[1]))
            node = node.args[0]
        result = evaluate(node, row)
        for kind, right in reversed(rights):
            result = (result and evaluate(right, row)) if kind == "and" else (result or evaluate(right, row))
        return result
    if op == "true":
        return True
    if op == "false":
        return False
    if op == "not":
        return not evaluate(expr.args[0], row)
    a, b = expr.args
    return _text(a, row) == _text(b, row)


def _text(value: Value, row: Row) -> str:
    return row(value.text) if value.field else value.text


def fields_named(expr: Expr) -> set[str]:
    """Every field name the expression reads."""
    names: set[str] = set()
    stack = [expr]
    while stack:
        node = stack.pop()
        if node.op == "eq":
            names.update(v.text for v in node.args if v.field)
        elif node.op in ("not", "and", "or"):
            stack.extend(node.args)
    return names


def column(c: ClassDef, name: str, text: str) -> str:
    """The field that ``name`` (a column such as ``name__label``, or a field name) is, or
    INVALID_VALUE [text, reason]."""
    plain = name.replace("__", "_")
    if c.has_field(plain) and not c.field(plain).internal:
        return plain
    raise InvalidValue(text, f"{c.name} has no field {name}")


def marshal(c: ClassDef, field: str, value: Any) -> str:
    """The text xapi's database keeps for a field's value (Schema.Value.marshal)."""
    xtype = c.field(field).type
    if isinstance(xtype, SetType):
        return _sexpr([_scalar(v) for v in value])
    if isinstance(xtype, MapType):
        return _sexpr([[_scalar(k), _scalar(v)] for k, v in value.items()])
    if isinstance(xtype, BoolType):
        return "true" if value else "false"
    if isinstance(xtype, FloatType):
        return _float(float(value))
    return _scalar(value)


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _float(value)
    return str(value)


def _float(value: float) -> str:
    # OCaml's string_of_float, which xapi's database uses: "%.12g", with a "." kept on integers.
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    text = f"{value:.12g}"
    return text if any(ch in text for ch in ".e") else text + "."


def _sexpr(items: list[Any]) -> str:
    def one(item: Any) -> str:
        if isinstance(item, list):
            return "(" + " ".join(one(i) for i in item) + ")"
        text = str(item)
        return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"

    return "(" + " ".join(one(i) for i in items) + ")"


REF_COLUMN = "_ref"  # xapi's row carries its own ref under this name


def select(tx: Transaction, c: ClassDef, text: str, refs: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """The records of ``c`` (of ``refs``, default all) that satisfy the expression ``text``."""
    expr = parse(text)
    names = {n: n if n == REF_COLUMN else column(c, n, text) for n in fields_named(expr)}
    chosen = {}
    for ref, record in tx.get_records(c.name, refs).items():

        def row(name: str, ref: str = ref, record: dict[str, Any] = record) -> str:
            field = names[name]
            return ref if field == REF_COLUMN else marshal(c, field, record[field])

        if evaluate(expr, row):
            chosen[ref] = record
    return chosen
