"""A template's provision spec (other_config:disks): xapi's format read and written, bad text refused."""

from __future__ import annotations

import pytest

from farside.errors import InvalidValue
from farside.model.provision import MAX_DISKS, ProvisionDisk, parse, render, with_sr

SPEC = '<provision><disk device="0" size="8589934592" sr="" bootable="true" type="system"/></provision>'


def test_reads_and_writes_xapis_format() -> None:
    """The spec xapi writes is read into its disks and written back the same."""
    assert parse(SPEC) == [ProvisionDisk("0", 8589934592, "", True, "system")]
    assert render(parse(SPEC)) == SPEC


def test_with_sr_puts_every_disk_on_the_sr() -> None:
    """vm-install's sr-uuid= rewrites each disk's sr attribute."""
    assert [d.sr for d in parse(with_sr(SPEC + "", "sr-uuid"))] == ["sr-uuid"]


@pytest.mark.parametrize(
    "text",
    [
        "not xml",
        "<disks/>",
        '<provision><cdrom device="1"/></provision>',
        '<provision><disk device="x" size="1"/></provision>',
        '<provision><disk device="0" size="-1"/></provision>',
        '<provision><disk device="0" size="1" type="metadata"/></provision>',
        '<provision><disk device="0" size="1"/><disk device="0" size="1"/></provision>',
        '<!DOCTYPE p [<!ENTITY a "aaaa">]><provision><disk device="0" size="1" sr="&a;"/></provision>',
        "<provision>" + '<disk device="0" size="1"/>' * 10000 + "</provision>",
        "<provision>" + "".join(f'<disk device="{n}" size="1"/>' for n in range(MAX_DISKS + 1)) + "</provision>",
    ],
    ids=["text", "root", "element", "device", "size", "type", "twice", "dtd", "huge", "too-many"],
)
def test_refuses_what_is_not_a_spec(text: str) -> None:
    """A malformed, hostile or oversized spec is INVALID_VALUE naming the key, never a crash."""
    with pytest.raises(InvalidValue) as info:
        parse(text)
    assert info.value.params[0] == "other_config:disks"
