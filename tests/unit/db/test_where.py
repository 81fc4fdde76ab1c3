"""get_all_records_where's expression language, against xapi's grammar (db_filter_parse.mly)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from farside.db import where
from farside.errors import InvalidValue
from farside.model import CLASSES

VM = CLASSES["VM"]
ROW = {"name_label": "web", "power_state": "Halted", "tags": ["a", "it's"], "other_config": {"k": "v"}}


def row(name: str) -> str:
    field = where.column(VM, name, "test")
    return where.marshal(VM, field, ROW[field])


def holds(text: str) -> bool:
    return where.evaluate(where.parse(text), row)


class TestGrammar:
    def test_fields_and_literals_compare_as_text(self) -> None:
        """A field compares with a literal by its stored text; the column name works as xapi's."""
        assert holds('field "name__label" = "web"')
        assert holds('field "name_label"="web"')
        assert holds('"Halted" = field "power_state"')
        assert not holds('field "name__label" = "db"')

    def test_not_takes_everything_after_it(self) -> None:
        """``not`` has the lowest precedence in xapi's grammar: ``not a or b`` is ``not (a or b)``."""
        assert not holds('not field "power_state" = "Running" or true')
        assert holds('(not field "power_state" = "Running") or false')
        # The example: name = web and not ((power_state = Halted) or true)
        assert not holds('field "name__label"="web" and not (field "power_state"="Halted") or true')

    def test_and_or_share_one_level_left_to_right(self) -> None:
        """``a or b and c`` is ``(a or b) and c``, as two %left operators of one level."""
        assert not holds("true or true and false")
        assert holds("false and false or true")

    def test_keywords_are_lexed_as_prefixes(self) -> None:
        """xapi's lexer reads ``trueand true`` as ``true and true``."""
        assert holds("trueand true")
        assert holds("\ttrue\n")

    def test_sets_and_maps_compare_as_sexpressions(self) -> None:
        """Sets and maps are stored as xapi's S-expressions, quotes escaped."""
        assert holds("field \"tags\" = \"('a' 'it\\'s')\"")
        assert holds("field \"other_config\" = \"(('k' 'v'))\"")

    @pytest.mark.parametrize(
        ("text", "reason"),
        [
            ("", where.PARSE_ERROR),
            ("true true", where.PARSE_ERROR),
            ('field "name_label"', where.PARSE_ERROR),
            ("(true", where.PARSE_ERROR),
            ("not", where.PARSE_ERROR),
            ('"unterminated', where.LEX_ERROR),
            ("True", where.LEX_ERROR),
            ("true\r", where.LEX_ERROR),
        ],
    )
    def test_malformed_is_invalid_value(self, text: str, reason: str) -> None:
        """A malformed expression is INVALID_VALUE [expr, reason], the reason xapi's."""
        with pytest.raises(InvalidValue) as info:
            where.parse(text)
        assert info.value.failure == ["INVALID_VALUE", text, reason]

    def test_unknown_field_is_invalid_value(self) -> None:
        """A field the class does not have is refused, never a traceback."""
        with pytest.raises(InvalidValue) as info:
            where.column(VM, "spaceship", 'field "spaceship" = "x"')
        assert info.value.failure[0] == "INVALID_VALUE"

    def test_deep_nesting_is_refused_and_long_chains_work(self) -> None:
        """A hostile nesting is refused cleanly; a long chain of terms evaluates without recursion."""
        with pytest.raises(InvalidValue):
            where.parse("(" * 5000 + "true" + ")" * 5000)
        assert holds(" or ".join(['field "name_label" = "x"'] * 5000 + ["true"]))

    def test_floats_and_bools_are_stored_as_xapi_stores_them(self) -> None:
        """Bools are true/false, floats OCaml's string_of_float."""
        assert where.marshal(VM, "is_a_template", False) == "false"
        assert where.marshal(CLASSES["task"], "progress", 1.0) == "1."
        assert where.marshal(CLASSES["task"], "progress", 0.25) == "0.25"


def _expr() -> st.SearchStrategy[str]:
    value = st.one_of(
        st.text(st.characters(blacklist_characters='"'), max_size=5).map(lambda t: f'"{t}"'),
        st.sampled_from(["name_label", "name__label", "power_state", "tags"]).map(lambda f: f'field "{f}"'),
    )
    leaf = st.one_of(st.sampled_from(["true", "false"]), st.tuples(value, value).map(lambda p: f"{p[0]} = {p[1]}"))
    return st.recursive(
        leaf,
        lambda inner: st.one_of(
            inner.map(lambda e: f"not {e}"),
            inner.map(lambda e: f"({e})"),
            st.tuples(inner, st.sampled_from(["and", "or"]), inner).map(lambda t: f"{t[0]} {t[1]} {t[2]}"),
        ),
        max_leaves=12,
    )


class TestFuzz:
    @given(st.text(max_size=60))
    def test_any_text_parses_or_is_invalid_value(self, text: str) -> None:
        """Whatever the text, the parser answers an expression or INVALID_VALUE, nothing else."""
        try:
            expr = where.parse(text)
        except InvalidValue as exc:
            assert exc.failure[1] == text
            return
        assert isinstance(where.evaluate(expr, lambda name: ""), bool)

    @given(_expr())
    def test_generated_expressions_parse_and_evaluate(self, text: str) -> None:
        """Every sentence of the grammar parses and evaluates to a bool over a real row."""
        assert isinstance(holds(text), bool)

    @given(_expr())
    def test_parenthesised_is_the_same(self, text: str) -> None:
        """Wrapping a whole expression in parentheses changes nothing."""
        assert holds(f"({text})") == holds(text)

    @given(_expr(), _expr())
    def test_not_negates(self, a: str, b: str) -> None:
        """``not (e)`` is the negation of e, and ``(a) and (b)`` the conjunction."""
        assert holds(f"not ({a})") == (not holds(a))
        assert holds(f"({a}) and ({b})") == (holds(a) and holds(b))
