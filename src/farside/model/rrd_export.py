"""RRDs on the wire, in xapi's formats: ``/rrd_updates`` (rrdtool's xport, XML or JSON) and a whole
RRD (``Rrd.to_xml``, as ``/vm_rrd`` and ``/host_rrd`` send it)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape

from farside.model.rrd import CF, NoArchive, Rrd, pdp_start


def f_to_s(value: float) -> str:
    """A float as xapi writes one (``Rrd_utils.f_to_s``): ``%0.5g``, ``NaN``, ``Infinity``, ``0.0``."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "0.0"
    return f"{value:0.5g}"


@dataclass(frozen=True)
class Updates:
    """The rows of several RRDs since a time: legend ``CF:prefix+name`` per column, newest row first."""

    start: int
    step: int
    end: int
    legend: list[str]
    rows: list[tuple[int, list[float]]]


def updates(prefixed: Sequence[tuple[str, Rrd]], start: int, interval: int, cf: CF | None) -> Updates:
    """What xapi's ``Rrd_updates.create_multi`` exports: every RRD's archives that cover ``start``
    (negative: seconds before the last update) at rows of at least ``interval`` seconds.

    The RRDs must share their step and have been updated together (the sampler does both); those
    whose archives differ from the first one's are left out, as xapi leaves them.

    Raises:
        NoArchive: no RRD, or none has an archive of ``cf``.
    """
    if not prefixed:
        raise NoArchive("no RRD")
    first_rrd = prefixed[0][1]
    step, last_updated = first_rrd.step, first_rrd.last_updated
    prefixed = [(p, r) for p, r in prefixed if r.step == step]
    pdp_interval = interval // step
    start = min(start + int(r.last_updated) if start < 0 else start for _, r in prefixed)
    chosen = [r.best_archives(pdp_interval, cf, start) for _, r in prefixed]
    head = next((a[0] for a in chosen if a), None)
    if head is None:
        raise NoArchive(cf.value if cf else "")
    chosen = [[a for a in archives if (a.rows, a.pdp_count) == (head.rows, head.pdp_count)] for archives in chosen]
    legend = [
        f"{archive.cf.value}:{prefix}{name}"
        for (prefix, rrd), archives in zip(prefixed, chosen, strict=True)
        for archive in archives
        for name in rrd.names()
    ]
    rings = [ring for archives in chosen for archive in archives for ring in archive.rings]
    row_step = step * head.pdp_count
    last_cdp, _ = pdp_start(last_updated, row_step)
    first_cdp = pdp_start(float(start), row_step)[0] + row_step
    rows = []
    for age in range(head.rows):
        time = last_cdp - age * row_step
        if time < start:
            break
        rows.append((time, [ring.peek(age) for ring in rings]))
    return Updates(first_cdp, row_step, last_cdp, legend, rows)


def updates_xml(u: Updates) -> str:
    """``<xport><meta>…<legend><entry>…</entry></legend></meta><data><row><t>…</t><v>…</v></row></data></xport>``."""
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f"<xport><meta><start>{u.start}</start><step>{u.step}</step><end>{u.end}</end>",
        f"<rows>{len(u.rows)}</rows><columns>{len(u.legend)}</columns><legend>",
        *(f"<entry>{escape(name)}</entry>" for name in u.legend),
        "</legend></meta><data>",
    ]
    for time, values in u.rows:
        parts.append(f"<row><t>{time}</t>" + "".join(f"<v>{f_to_s(v)}</v>" for v in values) + "</row>")
    parts.append("</data></xport>")
    return "".join(parts)


def updates_json(u: Updates) -> str:
    """xapi's JSON form: the same figures, values as strings (``Rrd_updates.json_of_t``)."""
    meta = {
        "start": u.start,
        "step": u.step,
        "end": u.end,
        "rows": len(u.rows),
        "columns": len(u.legend),
        "legend": u.legend,
    }
    data = [{"t": t, "values": [f_to_s(v) for v in values]} for t, values in u.rows]
    return json.dumps({"meta": meta, "data": data})


def rrd_xml(rrd: Rrd) -> str:
    """The whole RRD as xapi's ``Rrd.xml_to_output`` writes it: rows oldest first."""
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f"<rrd><version>0003</version><step>{rrd.step}</step><lastupdate>{int(rrd.last_updated)}</lastupdate>",
    ]
    for s in rrd.sources:
        parts.append(
            f"<ds><name>{escape(s.name)}</name><type>{s.type.value}</type>"
            f"<minimal_heartbeat>{f_to_s(s.heartbeat)}</minimal_heartbeat><min>{f_to_s(s.min)}</min>"
            f"<max>{f_to_s(s.max)}</max><last_ds>{f_to_s(s.last) if not math.isnan(s.last) else '0.0'}</last_ds>"
            f"<value>{f_to_s(s.value)}</value><unknown_sec>{int(s.unknown_sec)}</unknown_sec></ds>"
        )
    for a in rrd.archives:
        parts.append(
            f"<rra><cf>{a.cf.value}</cf><pdp_per_row>{a.pdp_count}</pdp_per_row>"
            f"<params><xff>{f_to_s(a.xff)}</xff></params><cdp_prep>"
        )
        parts += [
            f"<ds><primary_value>0.0</primary_value><secondary_value>0.0</secondary_value>"
            f"<value>{f_to_s(v)}</value><unknown_datapoints>{n}</unknown_datapoints></ds>"
            for v, n in zip(a.cdp_values, a.cdp_unknown, strict=True)
        ]
        parts.append("</cdp_prep><database>")
        for age in range(a.rows - 1, -1, -1) if a.rings else ():
            parts.append("<row>" + "".join(f"<v>{f_to_s(r.peek(age))}</v>" for r in a.rings) + "</row>")
        parts.append("</database></rra>")
    parts.append("</rrd>")
    return "".join(parts)
