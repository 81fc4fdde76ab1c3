"""An XVA reader and writer for tests, written from xapi's format description alone (not from
farside.backup), so that a test can check what the exporter writes and hand the importer
streams of its own making, hostile ones included."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

import xxhash
import zstandard

MIB = 1 << 20


def decompress(data: bytes) -> bytes:
    if data[:4] == b"\x28\xb5\x2f\xfd":
        return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True).read()
    if data[:2] == b"\x1f\x8b":
        return gzip.decompress(data)
    return data


def value(node: ET.Element) -> Any:
    """An XML-RPC <value> as Python: bare text is a string, as xapi writes it."""
    children = list(node)
    if not children:
        return node.text or ""
    child = children[0]
    if child.tag == "struct":
        return {m.findtext("name"): value(m.find("value")) for m in child.findall("member")}  # type: ignore[arg-type]
    if child.tag == "array":
        return [value(v) for v in child.find("data").findall("value")]  # type: ignore[union-attr]
    if child.tag == "boolean":
        return child.text == "1"
    if child.tag == "double":
        return float(child.text or 0)
    if child.tag in ("i4", "int"):
        return int(child.text or 0)
    if child.tag == "dateTime.iso8601":
        return child.text
    if child.tag == "string":
        return child.text or ""
    raise AssertionError(f"unexpected XML-RPC type {child.tag}")


@dataclass
class Parsed:
    ova_raw: bytes
    ova: dict[str, Any]
    members: list[tuple[str, int]]
    chunks: dict[str, dict[int, bytes]] = field(default_factory=dict)  # prefix -> counter -> data
    tail: bytes = b""

    def objects(self, cls: str) -> list[dict[str, Any]]:
        return [o for o in self.ova["objects"] if o["class"] == cls]


def parse(stream: bytes) -> Parsed:
    """Read an XVA with the standard tar module, checking each chunk's XXH64 or SHA-1 member."""
    data = decompress(stream)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
        members = archive.getmembers()
        assert members[0].name == "ova.xml", members[0].name
        ova_raw = archive.extractfile(members[0]).read()  # type: ignore[union-attr]
        parsed = Parsed(ova_raw, value(ET.fromstring(ova_raw)), [(m.name, m.size) for m in members])
        pending: tuple[str, bytes] | None = None
        for m in members[1:]:
            body = archive.extractfile(m).read()  # type: ignore[union-attr]
            if m.name.endswith(".xxhash"):
                assert pending is not None and m.name == pending[0] + ".xxhash"
                assert body.decode() == f"{xxhash.xxh64_intdigest(pending[1]):016X}"
                prefix, counter = pending[0].split("/")
                parsed.chunks.setdefault(prefix, {})[int(counter)] = pending[1]
                pending = None
            elif m.name.endswith(".checksum"):
                assert pending is not None and body.decode() == hashlib.sha1(pending[1]).hexdigest()
                prefix, counter = pending[0].split("/")
                parsed.chunks.setdefault(prefix, {})[int(counter)] = pending[1]
                pending = None
            else:
                assert pending is None, f"{m.name} follows a chunk without its checksum"
                pending = (m.name, body)
        assert pending is None
    end = archive.offset
    parsed.tail = data[end:]
    return parsed


def disk(chunks: dict[int, bytes], size: int) -> bytes:
    """A disk put together the way xapi's importer does: counters skipped are chunks of zeros."""
    out = bytearray()
    last = -1
    length = -1
    for counter in sorted(chunks):
        data = chunks[counter]
        if length < 0:
            length = len(data)
        out += bytes((counter - last - 1) * length)
        out += data
        last = counter
    out += bytes(size - len(out))
    return bytes(out[:size])


# -- writing ------------------------------------------------------------------------------------


def xml_value(v: Any) -> str:
    if isinstance(v, bool):
        return f"<value><boolean>{int(v)}</boolean></value>"
    if isinstance(v, int):
        return f"<value>{v}</value>"
    if isinstance(v, float):
        return f"<value><double>{v}</double></value>"
    if isinstance(v, dict):
        inner = "".join(f"<member><name>{k}</name>{xml_value(x)}</member>" for k, x in v.items())
        return f"<value><struct>{inner}</struct></value>"
    if isinstance(v, list):
        return "<value><array><data>" + "".join(xml_value(x) for x in v) + "</data></array></value>"
    text = str(v).replace("&", "&amp;").replace("<", "&lt;")
    return f"<value>{text}</value>"


def member(name: str, data: bytes, kind: bytes = tarfile.REGTYPE) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.type = kind
    return info.tobuf(tarfile.USTAR_FORMAT) + data + bytes(-len(data) % 512)


def chunk(name: str, data: bytes, sha1: bool = False, digest: str | None = None) -> bytes:
    if sha1:
        return member(name, data) + member(name + ".checksum", (digest or hashlib.sha1(data).hexdigest()).encode())
    return member(name, data) + member(name + ".xxhash", (digest or f"{xxhash.xxh64_intdigest(data):016X}").encode())


def header(
    *,
    disk_size: int = 2 * MIB,
    vdi_id: str = "Ref:9",
    uuid: str = "0b6e1a0c-5a6e-4c39-9d59-2b9a2f6b0a01",
    version: tuple[int, int] = (1, 9),
    physical: int = 0,
    name: str = "hand-made",
    mac: str = "02:11:22:33:44:55",
    userdevice: str = "0",
    memory: int = 16 * MIB,
) -> bytes:
    """A minimal ova.xml as an old XenServer would write it: one VM, one disk, one VIF."""
    vm = {
        "uuid": uuid, "name_label": name, "power_state": "Halted", "memory_static_max": memory,
        "memory_dynamic_max": 16 * MIB, "memory_dynamic_min": 16 * MIB, "memory_static_min": 16 * MIB,
        "VCPUs_max": 1, "VCPUs_at_startup": 1, "VBDs": ["Ref:3"], "VIFs": ["Ref:1"], "is_a_template": False,
        "is_control_domain": False, "other_config": {"mac_seed": "x"}, "version": 5, "resident_on": "Ref:7",
    }  # fmt: skip
    objects = [
        {"class": "VM", "id": "Ref:0", "snapshot": vm},
        {"class": "VIF", "id": "Ref:1", "snapshot": {"uuid": "9e1a2b3c-0000-4000-8000-000000000001", "device": "0",
         "network": "Ref:2", "VM": "Ref:0", "MAC": mac, "MTU": 1500}},
        {"class": "network", "id": "Ref:2", "snapshot": {"uuid": "9e1a2b3c-0000-4000-8000-000000000002",
         "name_label": "Pool-wide network associated with eth0", "bridge": "xenbr0", "VIFs": ["Ref:1"], "MTU": 1500}},
        {"class": "VBD", "id": "Ref:3", "snapshot": {"uuid": "9e1a2b3c-0000-4000-8000-000000000003", "VM": "Ref:0",
         "VDI": vdi_id, "userdevice": userdevice, "bootable": True, "mode": "RW", "type": "Disk"}},
        {"class": "VDI", "id": vdi_id, "snapshot": {"uuid": "9e1a2b3c-0000-4000-8000-000000000004", "name_label": "d",
         "SR": "Ref:5", "virtual_size": disk_size, "physical_utilisation": physical, "type": "user",
         "sm_config": {}, "VBDs": ["Ref:3"]}},
        {"class": "SR", "id": "Ref:5", "snapshot": {"uuid": "9e1a2b3c-0000-4000-8000-000000000005",
         "content_type": "", "VDIs": [vdi_id]}},
        {"class": "VGPU", "id": "Ref:6", "snapshot": {"uuid": "x"}},
    ]  # fmt: skip
    ver = {"hostname": "xs", "date": "2017-02-16", "product_version": "7.1.0", "product_brand": "XenServer",
           "build_number": "137272c", "xapi_major": version[0], "xapi_minor": version[1], "export_vsn": 2}  # fmt: skip
    return xml_value({"version": ver, "objects": objects}).encode()


END = bytes(1024)
