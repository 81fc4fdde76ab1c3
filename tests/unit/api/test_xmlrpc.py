"""The hand-written XML-RPC encoder: whatever it writes, the standard library reads back the same."""

from __future__ import annotations

import xmlrpc.client as stdlib
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from farside.api import xmlrpc as codec
from farside.db.schema import TABLES
from farside.model.types import parse

# Text XML 1.0 can carry, as StringType.check admits it.
xml_text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\ufffe\uffff\r").filter(
        lambda c: c in "\t\n" or ord(c) >= 0x20
    )
)


def decode(value_xml: str) -> Any:
    params, _ = stdlib.loads(codec.success(value_xml), use_builtin_types=False)
    return params[0]["Value"]


@given(st.dictionaries(xml_text, xml_text))
def test_string_maps_round_trip(value: dict[str, str]) -> None:
    """Maps of any XML-safe text (with &, <, >) read back unchanged."""
    assert decode(codec.encoder(parse("(string -> string) map"))(value)) == value


@given(st.lists(st.integers(-(2**63), 2**63 - 1)))
def test_ints_go_as_decimal_strings(value: list[int]) -> None:
    """64-bit ints are sent as decimal strings, so no client's 32-bit int overflows."""
    assert decode(codec.encoder(parse("int set"))(value)) == [str(v) for v in value]


def test_whole_records_read_back() -> None:
    """A VM record with every field encodes to a struct the SDK's parser reads field for field."""
    vm = {f.name: f.default for f in TABLES["VM"].cls.fields}
    vm.update(name_label="a & <b>", memory_static_max=2**40, HVM_shadow_multiplier=1.5, tags=["x"])
    got = decode(codec.record_encoder("VM")(vm))
    assert got["name_label"] == "a & <b>"
    assert got["memory_static_max"] == str(2**40)
    assert got["HVM_shadow_multiplier"] == 1.5
    assert got["is_a_template"] is False
    assert got["snapshot_time"].value == "19700101T00:00:00Z"
    assert set(got) == {f.name for f in TABLES["VM"].cls.fields}


def test_failures_are_string_lists() -> None:
    """A failure response carries Status Failure and the ErrorDescription."""
    params, _ = stdlib.loads(codec.failure(["HANDLE_INVALID", "VM", "OpaqueRef:<x>"]))
    assert params[0] == {"Status": "Failure", "ErrorDescription": ["HANDLE_INVALID", "VM", "OpaqueRef:<x>"]}


def test_requests_with_a_dtd_are_refused() -> None:
    """Entity declarations never reach the parser."""
    body = b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY b "c">]><methodCall><methodName>x</methodName></methodCall>'
    try:
        codec.parse_request(body)
    except codec.MalformedRequest:
        return
    raise AssertionError("a DTD was accepted")
