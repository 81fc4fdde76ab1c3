"""ova.xml: xapi's encoding out, and a decoder that checks types, versions and hostile XML."""

from __future__ import annotations

import pytest

from farside.api.xva import ova
from farside.backup.errors import XvaIncompatibleVersion, XvaInvalid
from farside.model import STORED


def _vm(**changes: object) -> dict[str, object]:
    record = {f.name: f.default for f in STORED["VM"].fields}
    record.update(uuid="4a3b", name_label="web & db", memory_static_max=1 << 34, VBDs=["OpaqueRef:vbd"], **changes)
    return record


def test_encode_is_one_line_xmlrpc_with_refs_rewritten() -> None:
    """One line, no prolog, 64-bit ints as bare strings, refs to exported objects as Ref:N, others NULL."""
    snapshot = ova.snapshot("VM", _vm(resident_on="OpaqueRef:host"), {"OpaqueRef:vbd": "Ref:1"})
    document = ova.encode(ova.version("h"), [ova.Obj("VM", "Ref:0", snapshot)])
    assert document.startswith(b"<value><struct><member><name>version</name>") and b"\n" not in document
    assert b"<name>memory_static_max</name><value>17179869184</value>" in document
    assert b"<name>resident_on</name><value>OpaqueRef:NULL</value>" in document
    assert b"<value>Ref:1</value>" in document and b"web &amp; db" in document
    header = ova.decode(document)
    (vm,) = header.of_class("VM")
    assert vm.id == "Ref:0" and vm.snapshot["memory_static_max"] == 1 << 34 and vm.snapshot["VBDs"] == ["Ref:1"]
    assert header.version["export_vsn"] == "2"


def test_newer_xapi_is_refused() -> None:
    """An XVA from a newer xapi is IMPORT_INCOMPATIBLE_VERSION; an older one is read."""
    for minor, ok in ((ova.XAPI_MINOR, True), (ova.XAPI_MINOR + 1, False)):
        version = {**ova.version("h"), "xapi_minor": minor}
        document = ova.encode(version, [])
        if ok:
            assert ova.decode(document).objects == []
        else:
            with pytest.raises(XvaIncompatibleVersion):
                ova.decode(document)


@pytest.mark.parametrize(
    "document",
    [
        b"not xml",
        b'<!DOCTYPE v [<!ENTITY e "x">]><value>&e;</value>',
        b"<value><array><data>" * 40 + b"</data></array></value>" * 40,
        b"<value><struct><member><name>version</name><value>1</value></member></struct></value>",
        b"<value><struct><member><name>version</name><value><struct></struct></value></member></struct></value>",
    ],
)
def test_hostile_documents_are_import_errors(document: bytes) -> None:
    """Garbage, DTDs (entity expansion), deep nesting and missing parts are IMPORT_ERROR."""
    with pytest.raises(XvaInvalid):
        ova.decode(document)


def test_unknown_classes_and_fields_are_dropped_and_bad_types_refused() -> None:
    """VGPU objects and fields a newer xapi has are ignored; an int that is not one is refused."""
    head = "".join(f"<member><name>{k}</name><value>{v}</value></member>" for k, v in ova.version("h").items())
    objects = (
        "<value><struct><member><name>class</name><value>VGPU</value></member><member><name>id</name>"
        "<value>Ref:5</value></member><member><name>snapshot</name><value><struct/></value></member></struct></value>"
        "<value><struct><member><name>class</name><value>VM</value></member><member><name>id</name>"
        "<value>Ref:0</value></member><member><name>snapshot</name><value><struct><member><name>future</name>"
        "<value>1</value></member><member><name>VCPUs_max</name><value>{}</value></member></struct></value>"
        "</member></struct></value>"
    )
    wrap = (
        "<value><struct><member><name>version</name><value><struct>" + head + "</struct></value></member>"
        "<member><name>objects</name><value><array><data>{}</data></array></value></member></struct></value>"
    )
    header = ova.decode(wrap.format(objects.format("4")).encode())
    assert [o.cls for o in header.objects] == ["VM"] and header.objects[0].snapshot["VCPUs_max"] == 4
    with pytest.raises(XvaInvalid, match="VCPUs_max"):
        ova.decode(wrap.format(objects.format("four")).encode())
