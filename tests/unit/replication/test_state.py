"""What a metadata VDI receives: never the host's control domain, nor secrets."""

from __future__ import annotations

from farside.db import Commit, Database
from farside.db.bootstrap import create_pool
from farside.model.host_facts import CPU, HostFacts
from farside.replication.schema import REPLICATED
from farside.replication.state import delta_payload, full_payload

HOST = HostFacts("node1", "127.0.0.1", 8 << 30, 6 << 30, [CPU(0, "GenuineIntel", "cpu", "6", "85", "4", 2000, "")])


def test_control_domain_and_secrets_stay_home() -> None:
    db = Database.in_memory("pool")
    create_pool(db, "Site A", HOST, "pw")
    commits: list[Commit] = []
    db.subscribe(commits.append)
    with db.read() as tx:
        dom0 = tx.get_field("host", tx.refs("host")[0], "control_domain")
        assert tx.get_field("VM", dom0, "is_control_domain")
        payload = full_payload(tx, "", "", db.generation, "")
    assert dom0 not in payload["objects"]["VM"]
    assert "secret" not in REPLICATED and "secret" not in payload["objects"]
    with db.write() as tx:
        tx.set_fields("VM", dom0, {"name_label": "renamed"})
    with db.read() as tx:
        assert delta_payload(tx, commits[-1], "") is None
