"""The DR_run class (a Farside extension): one failover, failback or test failover, journaled.

Kept in the target pool's database so that any client, the CLI or the console, can follow,
resume or clean up a run that another began. ``steps`` is the journal (JSON: each step with its
state and what it did), ``report`` the summary as text and ``report_json`` the same as JSON.
"""

from farside.model.roles import Role
from farside.model.schema import RO, RT, RW, ClassDef, F, M

DR_RUN = ClassDef(
    "DR_run",
    "A disaster-recovery run: failover, failback or test failover (Farside extension)",
    create=None,
    destroy=Role.POOL_OPERATOR,
    fields=[
        F("uuid", "string", RT),
        F("name_label", "string", RW, setter=Role.POOL_OPERATOR),
        F("kind", "string", RO),
        # Written by the engine that holds the claim, wherever it runs (CLI or server), through
        # DR_run.save: a superseded engine's late write is refused, never mixed into the journal.
        F("state", "string", RO, "created"),
        F("options", "(string -> string) map", RO),
        # The engine carrying the run out (host:pid:nonce) and when it last said so: one at a time.
        F("runner", "string", RO),
        F("runner_heartbeat", "datetime", RO),
        F("steps", "string", RO, "{}"),
        # The LUNs the run works on ("SR uuid", "LUN path"), claimed before it attaches anything
        # (DR_run.claim_luns): one run per LUN; let go of when the run ends.
        F("luns", "string set", RO),
        F("report", "string", RO),
        F("report_json", "string", RO, "{}"),
        F("created", "datetime", RT),
        F("finished", "datetime", RO),
    ],
    messages=[
        M("create", Role.POOL_OPERATOR, [("kind", "string"), ("options", "(string -> string) map")], "DR_run ref"),
        M("start", Role.POOL_OPERATOR, [("self", "DR_run ref")], "void"),
        M("resume", Role.POOL_OPERATOR, [("self", "DR_run ref")], "void"),
        M("cleanup", Role.POOL_OPERATOR, [("self", "DR_run ref")], "void"),
        M("set_options", Role.POOL_OPERATOR, [("self", "DR_run ref"), ("value", "(string -> string) map")], "void"),
        M("claim", Role.POOL_OPERATOR, [("self", "DR_run ref"), ("runner", "string")], "void"),
        M("unclaim", Role.POOL_OPERATOR, [("self", "DR_run ref"), ("runner", "string")], "void"),
        M(
            "claim_luns",
            Role.POOL_OPERATOR,
            [("self", "DR_run ref"), ("runner", "string"), ("luns", "string set")],
            "void",
        ),
        M(
            "save",
            Role.POOL_OPERATOR,
            [("self", "DR_run ref"), ("runner", "string"), ("fields", "(string -> string) map")],
            "void",
        ),
    ],
    farside=True,
)
