"""What a DR run works with: its options, what it found, and the problems its pre-checks raise."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from farside.dr import probes

KINDS = ("failover", "failback", "test")
TITLES_BY_KIND = {"failover": "Failover", "failback": "Failback", "test": "Test failover"}
POWER = ("start", "start_paused", "none")
# What DR_run.state can be: the engine moves a run through these.
RUN_STATES = ("created", "running", "paused", "failed", "done", "cleaned up", "cleanup failed")
STEPS = (
    "discover", "fence", "claim", "split", "attach", "choose", "load", "select", "precheck", "recover", "start",
    "protect", "release", "report",
)  # fmt: skip

# The calls a pre-check may offer as its fix (Problem.action), and how a wizard asks for them.
FIX_ACTIONS = {"VM.hard_shutdown": "Shut down (hard) the VM {name} in this pool now?"}
# Steps a run may stop after, so that a wizard can show what was found and let the operator
# choose (the selection, the power option, fixes) before anything is recovered.
PAUSE_POINTS = ("discover", "load", "precheck")
OPTION_KEYS = (
    "luns", "select", "power", "confirm_split", "source_url", "source_pool", "split_mirrors", "pause_after",
    "declare_site_down", "ready_timeout", "ready_policy", "probe_hosts",
)  # fmt: skip


def _list(value: str, sep: str) -> list[str]:
    return [s.strip() for s in value.split(sep) if s.strip()]


@dataclass(frozen=True)
class Options:
    """A run's options, as kept in ``DR_run.options`` (a string map, so any client can set them).

    Keys: ``luns`` (LUN directory paths, separated by ``:``), ``select`` (vApp and VM names or
    uuids, separated by ``,``; empty: all), ``power`` (start, start_paused, none; a test failover
    never starts VMs running), ``confirm_split`` ("true": the operator confirms that the array's
    mirroring of LUNs whose replication state is unknown is stopped), ``source_url`` (the source
    pool's address: if it answers, the pre-check warns that its VMs may still run),
    ``source_pool`` (a pool uuid: use only that pool's metadata), ``split_mirrors`` ("true": split
    the replication of LUNs that are still replicating, through the storage adapter, before
    attaching them), ``pause_after`` (steps, separated by ``,``, after which the run stops in state
    ``paused`` until it is resumed; see PAUSE_POINTS), ``declare_site_down`` (the name of the source
    site's pool, or its uuid: the operator declares that site down, the fence step's third proof;
    refused while ``source_url`` answers XenAPI), ``ready_timeout`` and ``ready_policy``
    (the readiness probes' defaults: seconds, and ``continue`` or ``fail``; see dr.probes),
    ``probe_hosts`` (hosts TCP and HTTP readiness probes may reach, separated by ``,``).
    """

    kind: str
    luns: list[str]
    select: list[str]
    power: str
    confirm_split: bool
    source_url: str = ""
    source_pool: str = ""
    split_mirrors: bool = False
    pause_after: tuple[str, ...] = ()
    declare_site_down: str = ""
    ready_timeout: float = probes.DEFAULT_TIMEOUT_S
    ready_policy: str = "continue"
    probe_hosts: frozenset[str] = frozenset()

    @property
    def probe_defaults(self) -> probes.Defaults:
        return probes.Defaults(self.ready_timeout, self.ready_policy, self.probe_hosts)

    @classmethod
    def parse(cls, kind: str, options: dict[str, str]) -> Options:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
        unknown = sorted(set(options) - set(OPTION_KEYS))
        if unknown:
            raise ValueError(f"unknown options {', '.join(unknown)}; known: {', '.join(OPTION_KEYS)}")
        luns = _list(options.get("luns", ""), ":")
        if not luns:
            raise ValueError("options need 'luns': the LUN directories to recover from, separated by ':'")
        power = options.get("power", "start_paused" if kind == "test" else "start")
        if power not in POWER:
            raise ValueError(f"power must be one of {', '.join(POWER)}, not {power!r}")
        if kind == "test" and power == "start":
            raise ValueError("a test failover never starts VMs running: use start_paused or none")
        source_url = options.get("source_url", "")
        if source_url:
            parts = urllib.parse.urlsplit(source_url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(
                    f"source_url must be the source pool's http:// or https:// address, not {source_url!r}"
                )
            if parts.username or parts.password:
                raise ValueError("source_url must not carry credentials: read-only users can see a run's options")
        split_mirrors = options.get("split_mirrors", "") == "true"
        if kind == "test" and split_mirrors:
            raise ValueError("a test failover never splits mirrors: recover from a snapshot of the mirror instead")
        pause_after = tuple(_list(options.get("pause_after", ""), ","))
        wrong = [p for p in pause_after if p not in PAUSE_POINTS]
        if wrong:
            raise ValueError(f"pause_after takes {', '.join(PAUSE_POINTS)}, not {', '.join(wrong)}")
        declared = options.get("declare_site_down", "").strip()
        if kind == "test" and declared:
            raise ValueError("a test failover starts nothing for good: it needs no site declared down")
        try:
            ready_timeout = probes.parse_timeout(
                options.get("ready_timeout") or str(probes.DEFAULT_TIMEOUT_S), "ready_timeout"
            )
            ready_policy = probes.parse_policy(options.get("ready_policy") or "continue", "ready_policy")
        except probes.ProbeError as exc:
            raise ValueError(str(exc)) from None
        return cls(
            kind,
            luns,
            _list(options.get("select", ""), ","),
            power,
            options.get("confirm_split", "") == "true",
            source_url,
            options.get("source_pool", "").strip(),
            split_mirrors,
            pause_after,
            declared,
            ready_timeout,
            ready_policy,
            frozenset(_list(options.get("probe_hosts", ""), ",")),
        )


@dataclass
class Problem:
    """A pre-check's finding: an error stops the run before anything is recovered."""

    severity: str  # "error" or "warning"
    subject: str
    text: str
    fix: str = ""
    # Where the fix is a change of the run's options, those options: a wizard offers it as a
    # button (DR_run.set_options, then resume), the CLI as a flag.
    options: dict[str, str] = field(default_factory=dict)
    # Where the fix is one XenAPI call on this pool: {"method": one of FIX_ACTIONS, "vm": uuid}.
    # A wizard offers it as a button, makes the call as the operator, then runs the pre-checks again.
    action: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"severity": self.severity, "subject": self.subject, "text": self.text, "fix": self.fix,
                "options": self.options, "action": self.action}  # fmt: skip
