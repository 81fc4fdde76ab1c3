"""A template's provision spec: the disks ``VM.provision`` makes, kept in ``other_config:disks``.

xapi's format (xapi_templates.ml), one ``disk`` element a disk:
``<provision><disk device="0" size="8589934592" sr="" bootable="true" type="system"/></provision>``.
``sr`` is an SR's uuid, or empty for the pool's default SR. The text is a vm-admin's to set, so it
is parsed with bounds (no DTD, at most ``MAX_DISKS`` disks) and every attribute is checked.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from xml.sax.saxutils import quoteattr

from farside.errors import InvalidValue

DISKS_KEY = "disks"
MAX_SPEC_BYTES = 64 * 1024
MAX_DISKS = 16
VDI_TYPES = ("system", "user", "ephemeral", "suspend", "crashdump")


@dataclass(frozen=True)
class ProvisionDisk:
    """One disk to make: its VBD's userdevice, size in bytes, SR uuid ("" = default), type."""

    device: str
    size: int
    sr: str
    bootable: bool
    type: str


def parse(text: str) -> list[ProvisionDisk]:
    """The disks of a provision spec; INVALID_VALUE ["other_config:disks", text] when it is not one."""
    try:
        return _parse(text)
    except (ET.ParseError, ValueError) as exc:
        raise InvalidValue(f"other_config:{DISKS_KEY}", f"{text[:200]} ({exc})") from None


def _parse(text: str) -> list[ProvisionDisk]:
    if len(text.encode()) > MAX_SPEC_BYTES:
        raise ValueError(f"longer than {MAX_SPEC_BYTES} bytes")
    if "<!" in text:  # no DTD, so no entities to expand
        raise ValueError("a DTD or entity declaration is not allowed")
    root = ET.fromstring(text)
    if root.tag != "provision":
        raise ValueError("the root element must be <provision>")
    disks = []
    for element in root:
        if element.tag != "disk":
            raise ValueError(f"unknown element <{element.tag}>")
        a = element.attrib
        device, size, kind = a.get("device", ""), a.get("size", ""), a.get("type", "system")
        if not device.isdigit():
            raise ValueError(f"device {device!r} is not a device number")
        if not size.isdigit() or int(size) <= 0:
            raise ValueError(f"size {size!r} is not a positive number of bytes")
        if kind not in VDI_TYPES:
            raise ValueError(f"type {kind!r} is not one of {', '.join(VDI_TYPES)}")
        disks.append(ProvisionDisk(device, int(size), a.get("sr", ""), a.get("bootable", "false") == "true", kind))
    if len(disks) > MAX_DISKS:
        raise ValueError(f"more than {MAX_DISKS} disks")
    if len({d.device for d in disks}) != len(disks):
        raise ValueError("two disks name one device")
    return disks


def render(disks: list[ProvisionDisk]) -> str:
    """The spec's text, spelt as xapi writes it."""
    elements = "".join(
        f'<disk device={quoteattr(d.device)} size="{d.size}" sr={quoteattr(d.sr)} '
        f'bootable="{str(d.bootable).lower()}" type={quoteattr(d.type)}/>'
        for d in disks
    )
    return f"<provision>{elements}</provision>"


def with_sr(text: str, sr_uuid: str) -> str:
    """The spec with every disk put on ``sr_uuid`` (what ``xe vm-install sr-uuid=`` does)."""
    return render([ProvisionDisk(d.device, d.size, sr_uuid, d.bootable, d.type) for d in parse(text)])
