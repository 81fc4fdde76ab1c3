"""Metrics end to end: a real QEMU guest's figures in the data-source messages, xapi's RRD handlers
(checked against xapi's documented XML with ElementTree) and /metrics (read with prometheus_client's
own parser), with each way in and each refusal."""

from __future__ import annotations

import base64
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import XenAPI
from prometheus_client.parser import text_string_to_metric_families

from farside.model.roles import Role

from pools import PoolServer, make_pool
from vms import bootable_vm, make_sr, wait_serial

pytestmark = pytest.mark.e2e

TOKEN = "scrape-token-0123456789abcdef"
LEGEND = re.compile(r"^(AVERAGE|MIN|MAX):(host|vm):([0-9a-f-]{36}):([A-Za-z0-9_]+)$")
MIB16 = 16 << 20


@dataclass
class Site:
    server: PoolServer
    admin: XenAPI.Session
    reader: XenAPI.Session
    vm: str
    vm_uuid: str
    host: str


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """One pool with one running guest that writes its disk every tick, sampled for a few rounds."""
    base = tmp_path_factory.mktemp("metrics")
    make_pool(base / "pool")
    (base / "pool" / "metrics-token").write_text(TOKEN + "\n")
    (base / "pool" / "metrics-token").chmod(0o600)
    server = PoolServer(base / "pool")
    server.add_user("reader", Role.READ_ONLY)
    server.add_user("vmadmin", Role.VM_ADMIN)
    server.start()
    try:
        admin = server.session()
        sr = make_sr(admin, base / "lun")
        vm = bootable_vm(server, admin, sr, "metrics", counter=True)
        admin.xenapi.VM.start(vm, False, False)
        wait_serial(server, admin, vm, b"BOOT metrics")
        reader = server.session("reader", "pw")
        yield Site(server, admin, reader, vm, admin.xenapi.VM.get_uuid(vm), admin.xenapi.host.get_all()[0])
    finally:
        server.stop()


def _until(check: object, timeout: float = 40) -> None:
    """Wait for sampling rounds (every 5 s) until ``check()`` holds (a source not sampled yet fails)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():  # type: ignore[operator]
                return
        except XenAPI.Failure as failure:
            assert failure.details == ["INVALID_VALUE", "data_source", failure.details[2]]
        assert time.monotonic() < deadline, "the figures did not arrive"
        time.sleep(1)


def _get(site: Site, path: str, **params: str) -> httpx.Response:
    return httpx.get(site.server.url + path, params=params, timeout=30)


def test_guest_activity_moves_cpu_and_disk_figures(site: Site) -> None:
    """The ticking guest uses CPU and writes its disk: cpu0 and vbd_hda_write rise above 0, memory is its RAM."""
    q = site.reader.xenapi.VM.query_data_source
    _until(lambda: q(site.vm, "cpu0") > 0 and q(site.vm, "vbd_hda_write") > 0)
    assert 0 < q(site.vm, "cpu0") <= 1
    assert q(site.vm, "memory") == MIB16
    metrics = site.reader.xenapi.VM_metrics.get_record(site.reader.xenapi.VM.get_metrics(site.vm))
    assert metrics["VCPUs_number"] == "1"
    assert metrics["memory_actual"] == str(MIB16)
    assert set(metrics["VCPUs_utilisation"]) == {"0"} and 0 <= metrics["VCPUs_utilisation"]["0"] <= 1
    host = site.reader.xenapi.host.query_data_source
    assert host(site.host, "memory_total_kib") > host(site.host, "memory_free_kib") > 0
    assert 0 <= host(site.host, "cpu_avg") <= 1


def test_data_sources_are_xapis_records(site: Site) -> None:
    """get_data_sources lists data_source records; a non-default source is recorded on demand and forgotten."""
    _until(lambda: site.reader.xenapi.VM.get_data_sources(site.vm))
    sources = {ds["name_label"]: ds for ds in site.reader.xenapi.VM.get_data_sources(site.vm)}
    assert {"cpu0", "memory", "vbd_hda_read", "vbd_hda_write"} <= set(sources)
    keys = {"name_label", "name_description", "enabled", "standard", "units", "min", "max", "value"}
    assert all(set(ds) == keys for ds in sources.values())
    assert sources["cpu0"]["units"] == "(fraction)" and sources["cpu0"]["max"] == 1.0
    iops = sources["vbd_hda_iops_write"]
    assert (iops["enabled"], iops["standard"]) == (False, False)
    site.admin.xenapi.VM.record_data_source(site.vm, "vbd_hda_iops_write")
    _until(lambda: site.reader.xenapi.VM.query_data_source(site.vm, "vbd_hda_iops_write") > 0)
    site.admin.xenapi.VM.forget_data_source_archives(site.vm, "vbd_hda_iops_write")
    after = {ds["name_label"]: ds for ds in site.reader.xenapi.VM.get_data_sources(site.vm)}
    assert after["vbd_hda_iops_write"]["enabled"] is False
    host = {ds["name_label"] for ds in site.reader.xenapi.host.get_data_sources(site.host)}
    assert {"cpu0", "cpu_avg", "memory_total_kib", "memory_free_kib", "loadavg"} <= host


def test_bad_names_get_xapis_errors(site: Site) -> None:
    """An unknown source is INVALID_VALUE, an unknown VM HANDLE_INVALID; nothing is INTERNAL_ERROR."""
    api = site.admin.xenapi
    for call in (
        lambda: api.VM.query_data_source(site.vm, "nonesuch"),
        lambda: api.VM.record_data_source(site.vm, "nonesuch"),
        lambda: api.VM.forget_data_source_archives(site.vm, "nonesuch"),
        lambda: api.host.query_data_source(site.host, "nonesuch"),
    ):
        with pytest.raises(XenAPI.Failure) as failure:
            call()
        assert failure.value.details == ["INVALID_VALUE", "data_source", "nonesuch"]
    with pytest.raises(XenAPI.Failure) as failure:
        api.VM.get_data_sources("OpaqueRef:nonesuch")
    assert failure.value.details == ["HANDLE_INVALID", "VM", "OpaqueRef:nonesuch"]


def test_roles_are_xapis(site: Site) -> None:
    """Read-only may list and query but not record; recording a host source needs pool-operator."""
    with pytest.raises(XenAPI.Failure) as failure:
        site.reader.xenapi.VM.record_data_source(site.vm, "cpu0")
    assert failure.value.details[0] == "RBAC_PERMISSION_DENIED"
    vmadmin = site.server.session("vmadmin", "pw")
    vmadmin.xenapi.VM.record_data_source(site.vm, "cpu0")  # a default source: recorded already
    with pytest.raises(XenAPI.Failure) as failure:
        vmadmin.xenapi.host.record_data_source(site.host, "cpu0")
    assert failure.value.details[0] == "RBAC_PERMISSION_DENIED"


def test_rrd_updates_is_xports_xml(site: Site) -> None:
    """/rrd_updates: xapi's <xport> with legend CF:kind:uuid:name, one <v> per entry per row, newest first."""
    _until(lambda: _get(site, "/rrd_updates", session_id=site.reader.handle, start="-30").status_code == 200)
    response = _get(site, "/rrd_updates", session_id=site.reader.handle, start="-60", cf="AVERAGE", host="true")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/xml")
    root = ET.fromstring(response.content)
    assert root.tag == "xport" and [c.tag for c in root] == ["meta", "data"]
    meta = root.find("meta")
    assert meta is not None
    assert [c.tag for c in meta] == ["start", "step", "end", "rows", "columns", "legend"]
    legend = [e.text or "" for e in meta.iterfind("legend/entry")]
    parsed = [LEGEND.match(e) for e in legend]
    assert all(parsed), legend
    kinds = {(m.group(2), m.group(3)) for m in parsed if m}
    assert ("vm", site.vm_uuid) in kinds and any(kind == "host" for kind, _ in kinds)
    assert int(meta.findtext("columns", "")) == len(legend)
    rows = root.findall("data/row")
    assert int(meta.findtext("rows", "")) == len(rows) > 0
    assert all(len(r.findall("v")) == len(legend) for r in rows)
    times = [int(r.findtext("t", "")) for r in rows]
    assert times == sorted(times, reverse=True) and int(meta.findtext("step", "")) == 5
    only_vm = _get(site, "/rrd_updates", session_id=site.reader.handle, start="-30", vm_uuid=site.vm_uuid)
    entries = [e.text or "" for e in ET.fromstring(only_vm.content).iterfind("meta/legend/entry")]
    assert entries and all(f":vm:{site.vm_uuid}:" in e for e in entries)
    data = _get(site, "/rrd_updates", session_id=site.reader.handle, start="-30", json="true").json()
    assert data["meta"]["columns"] == len(data["meta"]["legend"]) and data["data"]


def test_whole_rrds_are_xapis_xml(site: Site) -> None:
    """/vm_rrd and /host_rrd: <rrd> with version 0003, step 5, a <ds> per source and its <rra>s."""
    for path, params in (("/vm_rrd", {"uuid": site.vm_uuid}), ("/host_rrd", {})):
        response = _get(site, path, session_id=site.reader.handle, **params)
        assert response.status_code == 200, response.text
        root = ET.fromstring(response.content)
        assert (root.tag, root.findtext("version"), root.findtext("step")) == ("rrd", "0003", "5")
        names = [d.findtext("name") for d in root.findall("ds")]
        assert "cpu0" in names
        cfs = {r.findtext("cf") for r in root.findall("rra")}
        assert cfs == {"AVERAGE", "MIN", "MAX"}
        assert all(len(row.findall("v")) == len(names) for row in root.iterfind("rra/database/row"))


def test_rrd_handlers_refuse_without_a_session(site: Site) -> None:
    """No session or a bad one: 401; a session in the cookie works; bad parameters 400, unknown VM 404."""
    for path in ("/rrd_updates?start=-10", "/vm_rrd?uuid=" + site.vm_uuid, "/host_rrd?json=false"):
        assert httpx.get(site.server.url + path).status_code == 401
        assert httpx.get(site.server.url + path + "&session_id=OpaqueRef:bad").status_code == 401
        cookie = httpx.get(site.server.url + path, cookies={"session_id": site.reader.handle})
        assert cookie.status_code == 200, (path, cookie.text)
    assert _get(site, "/rrd_updates", session_id=site.reader.handle).status_code == 400
    assert _get(site, "/rrd_updates", session_id=site.reader.handle, start="x").status_code == 400
    assert _get(site, "/rrd_updates", session_id=site.reader.handle, start="0", cf="SUM").status_code == 400
    unknown = "00000000-0000-4000-8000-000000000000"
    assert _get(site, "/vm_rrd", session_id=site.reader.handle, uuid=unknown).status_code == 404
    assert _get(site, "/rrd_updates", session_id=site.reader.handle, start="0", vm_uuid=unknown).status_code == 404


def _families(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    return {f.name: [(s.labels, s.value) for s in f.samples] for f in text_string_to_metric_families(text)}


def test_metrics_is_prometheus_text(site: Site) -> None:
    """/metrics parses with prometheus_client: the guest's and host's figures, DR figures, sampler cost."""
    _until(lambda: site.reader.xenapi.VM.query_data_source(site.vm, "cpu0") > 0)
    response = _get(site, "/metrics", session_id=site.reader.handle)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    families = _families(response.text)
    vm = {labels["data_source"]: value for labels, value in families["farside_vm_data_source"]
          if labels["vm_uuid"] == site.vm_uuid}  # fmt: skip
    assert vm["memory"] == MIB16 and vm["cpu0"] >= 0
    host = {labels["data_source"] for labels, _ in families["farside_host_data_source"]}
    assert {"cpu0", "memory_total_kib", "loadavg"} <= host
    ages = families["farside_metadata_age_seconds"]
    assert all(value >= 0 for _, value in ages)
    for name in ("farside_mirror_rpo_seconds", "farside_dr_run_last_duration_seconds"):
        assert name in families  # declared even while there is nothing to report
    # prometheus_client names a counter family without its _total suffix
    assert families["farside_metrics_sampler_cpu_seconds"][0][1] > 0


def test_metrics_ways_in_and_refusals(site: Site) -> None:
    """Session (query or cookie), basic auth of any role, or the operator's bearer token; else 401."""
    url = site.server.url + "/metrics"

    def basic(user: str, password: str) -> dict[str, str]:
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}

    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert httpx.get(url, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert httpx.get(url, headers=basic("reader", "pw")).status_code == 200
    assert httpx.get(url, headers=basic("reader", "wrong")).status_code == 401
    assert httpx.get(url, cookies={"session_id": site.reader.handle}).status_code == 200
    token = site.server.data_dir / "metrics-token"
    token.chmod(0o644)  # read on each request: a token others could read is no token
    assert httpx.get(url, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 401
    token.rename(token.with_suffix(".off"))  # no file, no bearer
    try:
        assert httpx.get(url, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 401
    finally:
        token.with_suffix(".off").rename(token)
        token.chmod(0o600)
    before = site.admin.xenapi.session.get_all()
    httpx.get(url, headers=basic("root", "secret"))
    assert site.admin.xenapi.session.get_all() == before  # the basic-auth session was closed again
