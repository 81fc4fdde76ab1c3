"""What a DR run works with: its options, what it found, and the problems its pre-checks raise."""

from __future__ import annotations

from dataclasses import dataclass

KINDS = ("failover", "failback", "test")
TITLES_BY_KIND = {"failover": "Failover", "failback": "Failback", "test": "Test failover"}
POWER = ("start", "start_paused", "none")


@dataclass(frozen=True)
class Options:
    """A run's options, as kept in ``DR_run.options`` (a string map, so any client can set them).

    Keys: ``luns`` (LUN directory paths, separated by ``:``), ``select`` (vApp and VM names or
    uuids, separated by ``,``; empty: all), ``power`` (start, start_paused, none; a test failover
    never starts VMs running), ``confirm_split`` ("true": the operator confirms that the array's
    mirroring of LUNs whose replication state is unknown is stopped), ``source_url`` (the source
    pool's address: if it answers, the pre-check warns that its VMs may still run).
    """

    kind: str
    luns: list[str]
    select: list[str]
    power: str
    confirm_split: bool
    source_url: str = ""

    @classmethod
    def parse(cls, kind: str, options: dict[str, str]) -> Options:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
        luns = [p for p in options.get("luns", "").split(":") if p]
        if not luns:
            raise ValueError("options need 'luns': the LUN directories to recover from, separated by ':'")
        power = options.get("power", "start_paused" if kind == "test" else "start")
        if power not in POWER:
            raise ValueError(f"power must be one of {', '.join(POWER)}, not {power!r}")
        if kind == "test" and power == "start":
            raise ValueError("a test failover never starts VMs running: use start_paused or none")
        select = [s.strip() for s in options.get("select", "").split(",") if s.strip()]
        return cls(kind, luns, select, power, options.get("confirm_split", "") == "true", options.get("source_url", ""))


@dataclass
class Problem:
    """A pre-check's finding: an error stops the run before anything is recovered."""

    severity: str  # "error" or "warning"
    subject: str
    text: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"severity": self.severity, "subject": self.subject, "text": self.text, "fix": self.fix}
