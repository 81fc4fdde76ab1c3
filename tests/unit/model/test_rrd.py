"""The RRD engine against xapi-rrd's arithmetic, and its export formats read by a plain XML parser."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET

import pytest

from farside.model.rrd import CF, TIMESCALES, DSType, NoArchive, Rrd, Source, UnknownSource
from farside.model.rrd_export import f_to_s, rrd_xml, updates, updates_json, updates_xml

T0 = 1_699_999_980  # on a minute's boundary


def _rrd(*sources: Source) -> Rrd:
    return Rrd(list(sources), T0)


def _feed(rrd: Rrd, steps: int, make: dict[str, object]) -> None:
    for i in range(1, steps + 1):
        rrd.update(T0 + 5 * i, {name: fn(i) for name, fn in make.items()})  # type: ignore[operator]


def test_gauge_keeps_its_value_and_derive_becomes_a_rate() -> None:
    """A constant gauge reads as itself; a counter rising 2.5 per 5 s reads as 0.5 per second."""
    rrd = _rrd(Source("memory", DSType.GAUGE, 0), Source("cpu0", DSType.DERIVE, 0, 1))
    _feed(rrd, 10, {"memory": lambda i: 1024.0, "cpu0": lambda i: 2.5 * i})
    assert rrd.query("memory") == 1024.0
    assert rrd.query("cpu0") == pytest.approx(0.5)


def test_a_rate_out_of_bounds_is_unknown() -> None:
    """A fraction above its max of 1 is stored as NaN, as xapi stores it."""
    rrd = _rrd(Source("cpu0", DSType.DERIVE, 0, 1))
    _feed(rrd, 3, {"cpu0": lambda i: 10.0 * i})
    assert math.isnan(rrd.query("cpu0"))


def test_missing_readings_are_unknown_and_averages_renormalise() -> None:
    """A minute whose last 5 s points are unknown averages the known ones (xapi renormalises)."""
    rrd = _rrd(Source("x", DSType.GAUGE, 0))
    for i in range(1, 25):
        rrd.update(T0 + 5 * i, {"x": 10.0} if i <= 18 else {})
    minute = next(a for a in rrd.archives if a.pdp_count == 12 and a.cf is CF.AVERAGE)
    assert minute.rings[0].peek(0) == pytest.approx(10.0)
    five = next(a for a in rrd.archives if a.pdp_count == 1)
    assert math.isnan(five.rings[0].peek(0))  # the last step had no reading


def test_min_and_max_archives_consolidate_a_minute() -> None:
    """MIN and MAX of the 1-minute archive see the lowest and highest 5 s values of that minute."""
    rrd = _rrd(Source("x", DSType.GAUGE, 0))
    _feed(rrd, 24, {"x": lambda i: float(i % 12)})
    by_cf = {a.cf: a for a in rrd.archives if a.pdp_count == 12}
    assert by_cf[CF.MIN].rings[0].peek(0) == 0.0
    assert by_cf[CF.MAX].rings[0].peek(0) == 11.0
    assert by_cf[CF.AVERAGE].rings[0].peek(0) == pytest.approx(5.5)


def test_memory_is_bounded_by_the_time_scales() -> None:
    """However long it runs, an archive keeps its fixed number of rows (xapi's time scales)."""
    rrd = _rrd(Source("x", DSType.GAUGE, 0))
    _feed(rrd, 500, {"x": lambda i: 1.0})
    assert sorted({(a.rows, a.pdp_count) for a in rrd.archives}) == sorted(TIMESCALES)
    assert {a.cf for a in rrd.archives} == {CF.AVERAGE, CF.MIN, CF.MAX}
    assert all(len(ring) == a.rows for a in rrd.archives for ring in a.rings)


def test_sources_are_added_and_forgotten() -> None:
    """A source added later starts unknown; a forgotten one is gone with its history."""
    rrd = _rrd(Source("a", DSType.GAUGE, 0))
    _feed(rrd, 2, {"a": lambda i: 1.0})
    rrd.add_source(Source("b", DSType.GAUGE, 0), T0 + 10)
    _feed(rrd, 4, {"a": lambda i: 1.0, "b": lambda i: 2.0})
    assert rrd.names() == ["a", "b"]
    rrd.remove_source("a")
    assert rrd.names() == ["b"]
    with pytest.raises(UnknownSource):
        rrd.query("a")
    assert all(len(a.rings) == 1 for a in rrd.archives)


def test_float_text_is_xapis() -> None:
    """Rrd_utils.f_to_s: %0.5g, NaN, Infinity, 0.0."""
    assert [f_to_s(v) for v in (0.0, 1.0, 0.123456, 2.5e7, math.nan, math.inf, -math.inf)] == [
        "0.0", "1", "0.12346", "2.5e+07", "NaN", "Infinity", "-Infinity",
    ]  # fmt: skip


def _two() -> tuple[Rrd, Rrd]:
    host = _rrd(Source("cpu0", DSType.DERIVE, 0, 1), Source("loadavg", DSType.GAUGE, 0))
    vm = _rrd(Source("memory", DSType.GAUGE, 0))
    for i in range(1, 31):
        host.update(T0 + 5 * i, {"cpu0": 1.0 * i, "loadavg": 0.5})
        vm.update(T0 + 5 * i, {"memory": 16.0})
    return host, vm


def test_updates_xml_is_xports_format() -> None:
    """<xport><meta> start/step/end/rows/columns/legend, then rows newest first, one <v> per legend entry."""
    host, vm = _two()
    found = updates([("host:H:", host), ("vm:V:", vm)], T0 + 100, 5, CF.AVERAGE)
    root = ET.fromstring(updates_xml(found))
    assert root.tag == "xport"
    meta = root.find("meta")
    assert meta is not None
    legend = [e.text for e in meta.iterfind("legend/entry")]
    assert legend == ["AVERAGE:host:H:cpu0", "AVERAGE:host:H:loadavg", "AVERAGE:vm:V:memory"]
    assert int(meta.findtext("columns", "")) == 3
    assert int(meta.findtext("step", "")) == 5
    rows = root.findall("data/row")
    assert int(meta.findtext("rows", "")) == len(rows) > 0
    times = [int(r.findtext("t", "")) for r in rows]
    assert times == sorted(times, reverse=True) and times[0] == int(meta.findtext("end", ""))
    assert all(t >= T0 + 100 for t in times)
    newest = [float(v.text or "") for v in rows[0].findall("v")]
    assert newest == [pytest.approx(0.2), 0.5, 16.0]


def test_updates_pick_the_archive_that_covers_start() -> None:
    """A start an hour back, or interval=60, is answered from the 1-minute archives with every CF."""
    host, _ = _two()
    found = updates([("host:H:", host)], T0 - 3600, 60, None)
    assert found.step == 60
    assert [e.split(":")[0] for e in found.legend] == ["AVERAGE", "AVERAGE", "MIN", "MIN", "MAX", "MAX"]
    with pytest.raises(NoArchive):
        updates([], 0, 5, None)


def test_updates_json_carries_the_same_figures() -> None:
    """json=true: meta with the legend, data rows with t and values as strings."""
    host, _ = _two()
    found = updates([("host:H:", host)], -20, 5, CF.AVERAGE)
    data = json.loads(updates_json(found))
    assert data["meta"]["legend"] == found.legend
    assert data["meta"]["rows"] == len(data["data"]) == len(found.rows)
    assert all(isinstance(v, str) for row in data["data"] for v in row["values"])


def test_rrd_xml_is_xapis_layout() -> None:
    """<rrd> version 0003, step, lastupdate, a <ds> per source, an <rra> per archive with its rows."""
    host, _ = _two()
    root = ET.fromstring(rrd_xml(host))
    assert root.findtext("version") == "0003" and root.findtext("step") == "5"
    assert int(root.findtext("lastupdate", "")) == T0 + 150
    assert [d.findtext("name") for d in root.findall("ds")] == ["cpu0", "loadavg"]
    assert [d.findtext("type") for d in root.findall("ds")] == ["DERIVE", "GAUGE"]
    rras = root.findall("rra")
    assert len(rras) == len(host.archives)
    first = rras[0]
    assert first.findtext("cf") == "AVERAGE" and first.findtext("pdp_per_row") == "1"
    assert first.findtext("params/xff") == "0.5"
    rows = first.findall("database/row")
    assert len(rows) == 120 and all(len(r.findall("v")) == 2 for r in rows)
    assert [float(v.text or "") for v in rows[-1].findall("v")] == [pytest.approx(0.2), 0.5]  # newest last
    assert len(first.findall("cdp_prep/ds")) == 2
