"""Round-robin databases as xapi's ``xapi-rrd`` keeps them: data sources, archives, consolidation.

A data source (DS) turns raw readings into a rate per step (GAUGE: the value itself, DERIVE: the
change of a counter per second, ABSOLUTE: a rate given as is); every ``step`` seconds the rates
make a primary data point (PDP), and each archive (RRA) consolidates ``pdp_count`` PDPs into one
row (AVERAGE, MIN, MAX) kept in a ring of fixed size. Memory is bounded: with xapi's time scales
(5 s x 120, 1 min x 120, 1 h x 168, 1 day x 366) and AVERAGE/MIN/MAX a source holds 2,082 floats.

The arithmetic follows xapi's ``Rrd.ds_update`` and ``rra_update``, so values and their unknown
(NaN) spans come out as xapi's do, but for one case (``Archive.consolidate``). Pure computation:
no I/O, no clock (callers pass timestamps).
"""

from __future__ import annotations

import enum
import math
from array import array
from collections.abc import Mapping
from dataclasses import dataclass, field

STEP_S = 5
# xapi's Rrdd_shared.timescales: (rows, PDPs per row): 10 min, 2 h, 1 week, 1 year.
TIMESCALES = ((120, 1), (120, 12), (168, 720), (366, 17280))
# Readings further apart than this are unknown (xapi's ds_create ~mrhb:300.0).
HEARTBEAT_S = 300.0
NAN = math.nan


class CF(enum.Enum):
    """A consolidation function."""

    AVERAGE = "AVERAGE"
    MIN = "MIN"
    MAX = "MAX"
    LAST = "LAST"


class DSType(enum.Enum):
    GAUGE = "GAUGE"
    ABSOLUTE = "ABSOLUTE"
    DERIVE = "DERIVE"


class NoArchive(LookupError):
    """No archive of the consolidation function asked for (xapi's No_RRA_Available)."""


class UnknownSource(LookupError):
    """No data source of that name (xapi's Invalid_data_source)."""


class Ring:
    """A fixed-size ring of floats, newest first when read (xapi's Fring)."""

    def __init__(self, size: int, fill: float = NAN) -> None:
        self.data = array("d", [fill] * size)
        self.head = size - 1  # where the newest value is

    def __len__(self) -> int:
        return len(self.data)

    def push(self, value: float) -> None:
        self.head = (self.head + 1) % len(self.data)
        self.data[self.head] = value

    def peek(self, age: int) -> float:
        """The value pushed ``age`` pushes ago (0: the newest)."""
        return self.data[(self.head - age) % len(self.data)]


@dataclass
class Source:
    """A data source: how readings become rates, and the state of the PDP being built."""

    name: str
    type: DSType
    min: float = -math.inf
    max: float = math.inf
    heartbeat: float = HEARTBEAT_S
    last: float = NAN  # the last raw reading (NaN: unknown)
    value: float = 0.0  # accumulated rate x seconds of the current PDP
    unknown_sec: float = 0.0


@dataclass
class Archive:
    """An RRA: one ring per data source, and the consolidation in progress."""

    cf: CF
    rows: int
    pdp_count: int
    xff: float
    rings: list[Ring] = field(default_factory=list)
    cdp_values: list[float] = field(default_factory=list)
    cdp_unknown: list[int] = field(default_factory=list)

    def init_value(self, source: Source) -> float:
        """What the consolidation starts from, kept inside the source's bounds (xapi's CA-329043)."""
        start = {CF.AVERAGE: 0.0, CF.MIN: math.inf, CF.MAX: -math.inf, CF.LAST: NAN}[self.cf]
        return min(source.max, max(source.min, start))

    def add(self, source: Source, unknown: int = 0) -> None:
        self.rings.append(Ring(self.rows))
        self.cdp_values.append(self.init_value(source))
        self.cdp_unknown.append(unknown)

    def remove(self, index: int) -> None:
        del self.rings[index], self.cdp_values[index], self.cdp_unknown[index]

    def consolidate(self, offset: int, pdps: list[float]) -> None:
        """Fold ``offset`` PDPs of each source's value ``pdps[i]`` into the CDP in progress."""
        for i, pdp in enumerate(pdps):
            if math.isnan(pdp):
                # Renormalise the average over the PDPs still expected to be known. Unlike xapi,
                # a CDP whose every PDP is unknown counts them too, so it is stored as NaN rather
                # than as its initial 0.0 (xapi stores an unknown 5 s value as 0).
                old = self.pdp_count - self.cdp_unknown[i]
                new = old - offset
                if new > 0:
                    self.cdp_values[i] *= old / new
                self.cdp_unknown[i] += offset
                continue
            cdp = self.cdp_values[i]
            if self.cf is CF.AVERAGE:
                self.cdp_values[i] = cdp + pdp * offset / self.pdp_count
            elif self.cf is CF.MIN:
                self.cdp_values[i] = min(cdp, pdp)
            elif self.cf is CF.MAX:
                self.cdp_values[i] = max(cdp, pdp)
            else:
                self.cdp_values[i] = pdp


def pdp_start(time: float, step: int) -> tuple[int, float]:
    """The start of the step ``time`` falls in, and how far into it ``time`` is (xapi's get_times)."""
    start = step * (int(time) // step)
    return start, time - start


class Rrd:
    """One object's RRD (a VM's or the host's).

    Args:
        sources: the data sources, each fresh (no reading yet).
        timestamp: creation time (seconds since the epoch).
        use_min_max: MIN and MAX archives beside AVERAGE for the coarser time scales, as xapi's
            ``create_rras`` makes them.
    """

    def __init__(self, sources: list[Source], timestamp: float, use_min_max: bool = True, step: int = STEP_S) -> None:
        self.step = step
        self.last_updated = 0.0
        self.sources: list[Source] = []
        self.archives: list[Archive] = []
        for rows, pdps in TIMESCALES:
            if pdps > 1 and use_min_max:
                self.archives += [Archive(cf, rows, pdps, 1.0) for cf in (CF.AVERAGE, CF.MIN, CF.MAX)]
            else:
                self.archives.append(Archive(CF.AVERAGE, rows, pdps, 0.5))
        for source in sources:
            self.sources.append(source)
            for archive in self.archives:
                archive.add(source)
        self._update(timestamp, [NAN] * len(self.sources), new=True)

    def names(self) -> list[str]:
        return [s.name for s in self.sources]

    def index(self, name: str) -> int:
        for i, source in enumerate(self.sources):
            if source.name == name:
                return i
        raise UnknownSource(name)

    def add_source(self, source: Source, timestamp: float) -> None:
        """Start recording ``source`` (its history so far unknown); a name already kept is left as is."""
        if source.name in self.names():
            return
        pdps = int(timestamp) // self.step
        self.sources.append(source)
        for archive in self.archives:
            archive.add(source, pdps % archive.pdp_count)

    def remove_source(self, name: str) -> None:
        """Forget ``name`` and everything recorded of it."""
        index = self.index(name)
        del self.sources[index]
        for archive in self.archives:
            archive.remove(index)

    def update(self, timestamp: float, readings: Mapping[str, float]) -> None:
        """Feed one reading per source (a source missing from ``readings`` is unknown this time)."""
        self._update(timestamp, [readings.get(s.name, NAN) for s in self.sources], new=False)

    def query(self, name: str, cf: CF = CF.AVERAGE) -> float:
        """The newest consolidated value of ``name`` in the finest archive of ``cf``."""
        index = self.index(name)
        archives = self.best_archives(0, cf, int(self.last_updated))
        if not archives:
            raise NoArchive(cf.value)
        return archives[0].rings[index].peek(0)

    def best_archives(self, pdp_interval: int, cf: CF | None, start: int) -> list[Archive]:
        """The archives (of ``cf``, or of every CF) that reach back to ``start`` with rows of at
        least ``pdp_interval`` PDPs; failing that, those reaching furthest back (xapi's find_best_rras).

        Raises:
            NoArchive: no archive has that CF.
        """
        archives = [a for a in self.archives if cf is None or a.cf is cf]
        if not archives:
            raise NoArchive(cf.value if cf else "")
        last_pdp, _ = pdp_start(self.last_updated, self.step)

        def reaches(time: int, archive: Archive) -> bool:
            oldest = last_pdp - self.step * archive.rows * archive.pdp_count
            return archive.pdp_count >= pdp_interval and time > oldest

        first = next((a for a in archives if reaches(start, a)), None)
        if first is not None:
            return [a for a in archives if (a.rows, a.pdp_count) == (first.rows, first.pdp_count)]
        longest = archives[-1]
        oldest = 1 + last_pdp - self.step * longest.rows * longest.pdp_count
        return [a for a in archives if reaches(oldest, a)]

    # -- xapi's ds_update ------------------------------------------------------------------------

    def _update(self, timestamp: float, values: list[float], new: bool) -> None:
        interval = timestamp - self.last_updated
        if interval < 0:  # the clock went backwards
            interval = 5.0
        proc_start, _ = pdp_start(self.last_updated, self.step)
        occu_start, occu_age = pdp_start(timestamp, self.step)
        elapsed = (occu_start - proc_start) // self.step
        pre, post = (interval - occu_age, occu_age) if elapsed > 0 else (interval, 0.0)
        self.last_updated = timestamp
        rates = [self._rate(s, v, interval, new) for s, v in zip(self.sources, values, strict=True)]
        for source, rate in zip(self.sources, rates, strict=True):
            if math.isnan(rate):
                source.unknown_sec = pre
            else:
                source.value += pre * rate / interval if interval else 0.0
        if elapsed <= 0:
            return
        pdps = []
        for source in self.sources:
            span = (occu_start - proc_start) - source.unknown_sec
            raw = source.value / span if interval <= source.heartbeat and span > 0 else NAN
            pdps.append(raw if source.min <= raw <= source.max else NAN)
        self._archive(proc_start, elapsed, pdps)
        for source, rate in zip(self.sources, rates, strict=True):
            if math.isnan(rate):
                source.value, source.unknown_sec = 0.0, post
            else:
                source.value, source.unknown_sec = (post * rate / interval if interval else 0.0), 0.0

    @staticmethod
    def _rate(source: Source, value: float, interval: float, new: bool) -> float:
        if interval > source.heartbeat:
            source.last = value
            return NAN
        if source.type is DSType.ABSOLUTE or (source.type is DSType.DERIVE and new):
            rate = value
        elif source.type is DSType.GAUGE:
            rate = value * interval
        else:
            rate = value - source.last  # NaN when either reading is unknown
        source.last = value
        return rate

    def _archive(self, proc_start: int, elapsed: int, pdps: list[float]) -> None:
        for archive in self.archives:
            offset = archive.pdp_count - (proc_start // self.step) % archive.pdp_count
            steps = 0 if elapsed < offset else (elapsed - offset) // archive.pdp_count + 1
            archive.consolidate(min(offset, elapsed), pdps)
            if steps == 0:
                continue
            allowed = int(archive.xff * archive.pdp_count)
            for i, ring in enumerate(archive.rings):
                ring.push(archive.cdp_values[i] if archive.cdp_unknown[i] <= allowed else NAN)
            # Rows after the first are the current PDPs themselves: a CDP of one repeated value.
            for _ in range(min(steps - 1, archive.rows)):
                for i, ring in enumerate(archive.rings):
                    ring.push(pdps[i])
            for i, source in enumerate(self.sources):
                archive.cdp_unknown[i] = 0
                archive.cdp_values[i] = archive.init_value(source)
            archive.consolidate((elapsed - offset) % archive.pdp_count, pdps)
