"""The XML database dump codec: xapi's container, Farside's fields, strict reading."""

from __future__ import annotations

import pytest

from farside.backup import xmldb
from farside.errors import FarsideError, FieldTypeError
from farside.model import STORED

ALLOWED = {"VM": ["uuid", "name_label", "VCPUs_max", "tags", "other_config", "is_a_template", "HVM_shadow_multiplier"]}
VM = {
    "uuid": "0f0e1d2c-3b4a-5968-7788-99aabbccddee",
    "name_label": "it's a \\ test\nwith\ttabs & <angles>",
    "VCPUs_max": 4,
    "tags": ["a'b", "c\\d", ""],
    "other_config": {"k 1": "v'1", "empty": ""},
    "is_a_template": True,
    "HVM_shadow_multiplier": 1.5,
}
MANIFEST = {"schema_major_vsn": "1", "schema_minor_vsn": "1", "generation_count": "7"}


def dumped() -> bytes:
    return xmldb.to_xml(MANIFEST, {"VM": {"OpaqueRef:1": VM}})


def test_round_trip_keeps_every_value() -> None:
    """Strings with quotes, backslashes, newlines and markup, sets, maps, ints, floats and bools
    come back as they went."""
    back = xmldb.from_xml(dumped(), ALLOWED)
    assert back.manifest == MANIFEST
    assert back.objects == {"VM": {"OpaqueRef:1": VM}}


def test_layout_is_xapis() -> None:
    """database > manifest of pairs, then table name=CLASS > row ref=…; sets and maps as S-expressions."""
    text = dumped().decode()
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<database>\n<manifest><pair key="schema_major_vsn"')
    assert '<table name="VM">\n<row ref="OpaqueRef:1" uuid=' in text
    assert "tags=\"('a\\'b' 'c\\\\d' '')\"" in text
    assert "other_config=\"(('k 1' 'v\\'1') ('empty' ''))\"" in text
    assert 'is_a_template="true"' in text and 'VCPUs_max="4"' in text


def test_xapis_generation_attributes_are_read_and_ignored() -> None:
    data = dumped().replace(b'<row ref="OpaqueRef:1"', b'<row __mtime="5" __ctime="2" ref="OpaqueRef:1"')
    assert xmldb.from_xml(data, ALLOWED).objects["VM"]["OpaqueRef:1"] == VM


def test_mac_follows_content_not_layout() -> None:
    """The digest is the same for a differently laid out dump of the same content, and changes
    with any value."""
    key = b"k" * 32
    first = xmldb.from_xml(dumped(), ALLOWED)
    spaced = dumped().replace(b"<row ", b"<row   ").replace(b"</table>", b"</table >")
    second = xmldb.from_xml(spaced, ALLOWED)
    assert xmldb.mac(key, first.manifest, first.objects) == xmldb.mac(key, second.manifest, second.objects)
    first.objects["VM"]["OpaqueRef:1"]["VCPUs_max"] = 5
    assert xmldb.mac(key, first.manifest, first.objects) != xmldb.mac(key, second.manifest, second.objects)
    assert xmldb.mac(b"x" * 32, second.manifest, second.objects) != xmldb.mac(key, second.manifest, second.objects)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ((b"<database>", b'<!DOCTYPE d [<!ENTITY e "x">]><database>'), "DTD"),
        ((b'<table name="VM">', b'<table name="user">'), "not a class"),
        ((b" uuid=", b' password="x" uuid='), "no field"),
        ((b"</table>", b'<row ref="OpaqueRef:1"/></table>'), "ref of its own"),
        ((b"</table>", b'<row ref="nope"/></table>'), "ref of its own"),
        ((b"<manifest>", b"<manifest>text"), "no text"),
        ((b"</database>", b"<extra/></database>"), "unexpected <extra>"),
        ((b"</database>", b"</databas>"), "well-formed"),
        ((b'tags="(', b'tags="(('), "tags"),
        ((b"<manifest>", b'<manifest><pair key="generation_count" value="1"/>'), "each key once"),
    ],
)
def test_refuses_what_is_not_a_dump(change: tuple[bytes, bytes], words: str) -> None:
    with pytest.raises(xmldb.DumpInvalid, match=words):
        xmldb.from_xml(dumped().replace(*change, 1), ALLOWED)


def test_values_are_checked_against_their_types() -> None:
    with pytest.raises(FieldTypeError):
        xmldb.from_xml(dumped().replace(b'VCPUs_max="4"', b'VCPUs_max="four"'), ALLOWED)
    with pytest.raises(FarsideError):
        xmldb.from_xml(dumped().replace(b'is_a_template="true"', b'is_a_template="maybe"'), ALLOWED)


def test_every_stored_type_round_trips() -> None:
    """Each field of every class survives encode and decode at its default value."""
    for cls, c in STORED.items():
        record = {f.name: f.default for f in c.fields if not f.name.startswith("_")}
        allowed = {cls: list(record)}
        back = xmldb.from_xml(xmldb.to_xml(MANIFEST, {cls: {"OpaqueRef:x": record}}), allowed)
        assert back.objects[cls]["OpaqueRef:x"] == record, cls
