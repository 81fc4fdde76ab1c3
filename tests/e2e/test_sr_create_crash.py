"""SR.create under SIGKILL: the server dies at each point of it, and the same SR.create run again
after a restart leaves the SR once on the LUN and once in the pool, plugged and usable.

The server's fault hook (``FARSIDE_CRASH_AT``, farside.config.crash_point) kills it with SIGKILL at
a named point: before the LUN's records are committed (staged), after the LUN is formatted, after
the pool recorded the SR, after the lease was taken inside the plug, and after the plug.
"""

from __future__ import annotations

import http.client
import json
import signal
import xmlrpc.client
from pathlib import Path

import pytest
import XenAPI

from pools import PoolServer, make_pool
from vms import MIB, make_sr

pytestmark = pytest.mark.e2e

POINTS = ("sr-create:staged", "sr-create:formatted", "sr-create:recorded", "plug:leased", "sr-create:plugged")


def crashed_create(srv: PoolServer, lun: Path, point: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Start the server with the fault hook at ``point``, call SR.create, and see it die there."""
    monkeypatch.setenv("FARSIDE_CRASH_AT", point)
    srv.start()
    monkeypatch.delenv("FARSIDE_CRASH_AT")
    s = srv.session()
    with pytest.raises((OSError, http.client.HTTPException, xmlrpc.client.ProtocolError)):
        make_sr(s, lun)
    assert srv.process is not None
    assert srv.process.wait(10) == -signal.SIGKILL, f"the server was not killed at {point}"
    srv.stop()


def srs_on(s: XenAPI.Session, lun: Path) -> list[str]:
    """The pool's SRs whose PBD names ``lun``."""
    return [
        sr
        for sr, record in s.xenapi.SR.get_all_records().items()
        if any(s.xenapi.PBD.get_device_config(p).get("path") == str(lun) for p in record["PBDs"])
    ]


@pytest.mark.parametrize("point", POINTS)
def test_a_rerun_completes_an_sr_create_killed_at(point: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_pool(tmp_path / "pool")
    srv = PoolServer(tmp_path / "pool")
    lun = tmp_path / "lun"
    crashed_create(srv, lun, point, monkeypatch)
    try:
        srv.start()
        s = srv.session()
        sr = make_sr(s, lun, "again")
        assert srs_on(s, lun) == [sr]
        record = s.xenapi.SR.get_record(sr)
        on_lun = json.loads((lun / ".farside-sr" / "sr.json").read_text())
        assert on_lun["uuid"] == record["uuid"]
        assert "pending_for" not in on_lun  # finished: a third SR.create is refused, as on any SR
        assert record["name_label"] == on_lun["name_label"] == "again"
        assert [s.xenapi.PBD.get_currently_attached(p) for p in record["PBDs"]] == [True]
        assert sorted(p.name for p in lun.iterdir() if p.name.startswith(".farside-sr")) == [".farside-sr"]
        disk = {"SR": sr, "virtual_size": str(MIB), "type": "user", "name_label": "d", "sharable": False,
                "read_only": False, "other_config": {}, "sm_config": {}}  # fmt: skip
        vdi = s.xenapi.VDI.create(disk)
        assert (lun / s.xenapi.VDI.get_location(vdi)).is_file()
        with pytest.raises(XenAPI.Failure) as info:
            make_sr(s, lun)
        assert info.value.details[0] == "SR_BACKEND_FAILURE_FORMAT"
        assert srs_on(s, lun) == [sr]
    finally:
        srv.stop()


def test_another_pool_does_not_take_over_an_unfinished_sr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The unfinished SR belongs to the pool that began it: a second pool's SR.create is refused."""
    make_pool(tmp_path / "a", "Site A")
    make_pool(tmp_path / "b", "Site B")
    lun = tmp_path / "lun"
    crashed_create(PoolServer(tmp_path / "a"), lun, "sr-create:formatted", monkeypatch)
    b = PoolServer(tmp_path / "b").start()
    try:
        s = b.session()
        with pytest.raises(XenAPI.Failure) as info:
            make_sr(s, lun)
        assert info.value.details[0] == "SR_BACKEND_FAILURE_FORMAT"
        assert srs_on(s, lun) == []
    finally:
        b.stop()
