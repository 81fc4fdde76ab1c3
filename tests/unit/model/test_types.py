"""XenAPI's type language: parsing, checking wire values, storing them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from farside.errors import FieldTypeError, InvalidValue
from farside.model.types import EnumType, MapType, RefType, SetType, parse


class TestParse:
    def test_compound_types(self) -> None:
        """Maps, sets, refs and enums parse into their structure."""
        t = parse("(string -> enum vm_operations) map")
        assert isinstance(t, MapType) and isinstance(t.value, EnumType) and t.value.name == "vm_operations"
        s = parse("VBD ref set")
        assert isinstance(s, SetType) and isinstance(s.element, RefType) and s.element.target == "VBD"
        assert parse("int").spelling == "int"

    def test_unknown_spelling_is_a_bug(self) -> None:
        """A declaration with a misspelt type fails loudly at import."""
        with pytest.raises(ValueError):
            parse("integer")
        with pytest.raises(ValueError):
            parse("enum no_such_enum")


class TestCheck:
    def test_ints_from_numbers_and_strings(self) -> None:
        """Ints arrive as numbers (SDK) or decimal strings (xapi's own form)."""
        t = parse("int")
        assert t.check(5, "f") == 5 and t.check("-17", "f") == -17
        with pytest.raises(FieldTypeError):
            t.check("five", "f")
        with pytest.raises(FieldTypeError):
            t.check(True, "f")
        with pytest.raises(InvalidValue):
            t.check(str(2**63), "f")

    def test_enums_match_without_case(self) -> None:
        """Enum members match case-insensitively and come back in xapi's spelling."""
        t = parse("enum vm_power_state")
        assert t.check("halted", "power_state") == "Halted"
        with pytest.raises(InvalidValue) as info:
            t.check("Flying", "power_state")
        assert info.value.failure == ["INVALID_VALUE", "power_state", "Flying"]

    def test_strings_xml_cannot_carry_are_refused(self) -> None:
        """A control character that XML 1.0 cannot hold is refused, not stored."""
        with pytest.raises(InvalidValue):
            parse("string").check("a\x00b", "name_label")
        assert parse("string").check("tab\tnewline\n", "x") == "tab\tnewline\n"

    def test_datetimes_normalise(self) -> None:
        """Both xapi's and ISO 8601's forms are accepted and stored in xapi's."""
        t = parse("datetime")
        assert t.check("20240131T12:00:00Z", "d") == "20240131T12:00:00Z"
        assert t.check("2024-01-31T12:00:00Z", "d") == "20240131T12:00:00Z"
        with pytest.raises(InvalidValue):
            t.check("yesterday", "d")

    def test_sets_drop_duplicates(self) -> None:
        """A set keeps the first of equal members."""
        assert parse("string set").check(["a", "b", "a"], "tags") == ["a", "b"]

    def test_int_keyed_maps_take_text_keys(self) -> None:
        """XML-RPC struct keys are text, so int keys arrive as strings and are read back as ints."""
        assert parse("(int -> int) map").check({"1": 2}, "m") == {1: 2}


@given(st.dictionaries(st.text(), st.text()))
def test_maps_survive_storage(value: dict[str, str]) -> None:
    """Any string map comes back from its stored form unchanged."""
    t = parse("(string -> string) map")
    assert t.from_db(t.to_db(value)) == value


@given(st.dictionaries(st.integers(-(2**63), 2**63 - 1), st.integers(-(2**63), 2**63 - 1)))
def test_int_maps_survive_storage(value: dict[int, int]) -> None:
    """Int-keyed maps keep their key type through storage."""
    t = parse("(int -> int) map")
    assert t.from_db(t.to_db(value)) == value
